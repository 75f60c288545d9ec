"""The report's stylesheet, inlined in the page (no external resource). Screen and print (A4)."""

CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --soft:#f8fafc; --ok:#15803d; --bad:#b91c1c;
        --warn:#b45309; --info:#1d4ed8; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h3 { font-size: 14px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
     margin: 22px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 3px; }
p { margin: 4px 0; }
a { color: var(--info); text-decoration: none; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.sub { color: var(--muted); }
.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 2px 18px;
        margin: 10px 0 0; }
.meta div { overflow-wrap: anywhere; }
.meta b { color: var(--muted); font-weight: 500; margin-right: 4px; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { text-align: left; padding: 3px 7px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; color: #334155; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.detail { color: #334155; overflow-wrap: anywhere; font-size: 11.5px; }
td.nowrap { white-space: nowrap; }
tr.phase-change td { background: #f1f5f9; font-weight: 600; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 11.5px; font-weight: 600;
         color: #fff; background: #64748b; white-space: nowrap; }
.badge.small { padding: 0 5px; font-size: 10.5px; }
.s-COMPLETED, .s-GO, .s-pass, .s-done, .s-HOLD { background: var(--ok); }
.s-MONITORING, .s-CDC_MIGRATING { background: #0f766e; }
.s-ROLLED_BACK, .s-ROLLING_BACK, .s-ROLLBACK, .s-FAILED, .s-fail, .s-failed, .s-error,
.s-SWITCHOVER_FAILED { background: var(--bad); }
.s-NO_GO { background: #7e22ce; }
.s-WAIT, .s-wait, .s-started, .s-SWITCHING { background: var(--warn); }
.s-skipped, .s-undone { background: #94a3b8; }
.reason { margin-top: 6px; padding: 6px 10px; border-left: 3px solid var(--bad); background: #fef2f2; }
.reason.ok { border-color: var(--ok); background: #f0fdf4; }
section.cluster { border-top: 3px solid var(--ink); margin-top: 34px; padding-top: 12px; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 14px 18px; }
.plots figure.wide { grid-column: 1 / -1; }
figure { margin: 0; break-inside: avoid; }
figcaption { font-weight: 600; font-size: 13px; display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
figcaption .legend { font-weight: 400; color: #334155; font-size: 12px; }
.swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 8px;
          border-radius: 2px; }
figure .note { color: var(--muted); font-size: 11.5px; }
svg { width: 100%; height: auto; display: block; overflow: visible; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #475569; }
svg .grid { stroke: #eef2f7; stroke-width: 1; }
svg .axis { stroke: #94a3b8; stroke-width: 1; }
svg .unit { fill: #64748b; font-size: 10.5px; }
svg .marker-label, svg .bar-note { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg .marker-label { font-weight: 600; font-size: 10.5px; }
svg .row-label { fill: #334155; }
svg .bar-note { fill: #475569; font-size: 10.5px; }
svg .empty { fill: #94a3b8; font-style: italic; }
.matrix td.cell { text-align: center; width: 26px; padding: 2px; }
.matrix td.cell span { display: inline-block; min-width: 18px; border-radius: 3px; color: #fff; font-size: 11px;
                       font-weight: 700; }
.legend-line { font-size: 11.5px; color: var(--muted); margin: 4px 0; }
ul.reasons { margin: 0; padding-left: 18px; }
.overview td:first-child a { font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 11.5px; border-top: 1px solid var(--line);
         padding-top: 8px; }
@media (max-width: 760px) { .plots { grid-template-columns: 1fr; } }
@media print {
  @page { size: A4; margin: 12mm; }
  main { max-width: none; padding: 0; }
  body { font-size: 11.5px; }
  section.cluster { break-before: page; border-top: none; margin-top: 0; }
  table { font-size: 10.5px; }
  tr, figure, .timeline { break-inside: avoid; }
  thead { display: table-header-group; }
  a { color: inherit; }
}
"""
