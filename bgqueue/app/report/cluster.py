"""One cluster's section of the batch report: outcome, phase timeline and plots around the switchover,
then the record tables (bgqueue.app.report.records). Every value comes from a ``ClusterData``."""
from __future__ import annotations

from html import escape

from bgqueue.app.report.data import ClusterData, span, ts
from bgqueue.app.report.fmt import badge, clock, dur, num, stamp
from bgqueue.app.report.records import (
    checkpoints_table,
    checks_table,
    decisions_table,
    journal_table,
    phase_figures_table,
)
from bgqueue.app.report.replay import replay_table
from bgqueue.app.report.svg import Bar, Series, Tick, line_plot, phase_timeline
from bgqueue.model.phases import TERMINAL

PHASE_COLORS = {
    "PENDING": "#cbd5e1", "PREPARING": "#93c5fd", "SYNCING": "#60a5fa", "VALIDATING": "#a78bfa",
    "PILOTING": "#c084fc", "READY": "#fbbf24", "SWITCHING": "#f97316", "CDC_MIGRATING": "#22d3ee",
    "MONITORING": "#34d399", "ROLLING_BACK": "#f87171", "COMPLETED": "#15803d", "NO_GO": "#7e22ce",
    "SWITCHOVER_FAILED": "#dc2626", "ROLLED_BACK": "#b91c1c", "FAILED": "#7f1d1d",
}
VERDICT_COLORS = {"GO": "#15803d", "HOLD": "#15803d", "WAIT": "#d97706", "NO_GO": "#7e22ce",
                  "ROLLBACK": "#b91c1c"}

# (id, title, unit, [(metric, legend, colour)], note, wide)
PLOTS = [
    ("lag", "Replication lag", "ms", [("lag_ms", "lag", "#7c3aed")],
     "Heartbeat lag of the replica: green behind blue before the route flip, then blue (the reverse "
     "replica) behind green.", True),
    ("latency", "Latency percentiles (probe)", "ms",
     [("probe_p50_ms", "p50", "#2563eb"), ("probe_p95_ms", "p95", "#d97706"), ("probe_p99_ms", "p99", "#dc2626")],
     "A timed indexed read on the primary every 250 ms; percentiles over the sampler's 30 s window.", False),
    ("errors", "Error rate", "errors/s", [("errors_per_s", "errors/s", "#dc2626")],
     "Aborted connects and clients and access-denied errors on the primary.", False),
    ("throughput", "Throughput", "per second",
     [("qps", "queries/s", "#0891b2"), ("writes_per_s", "writes/s", "#16a34a")],
     "The primary's counters (they include the sampler's own ~12 queries/s and 4 writes/s).", False),
    ("sessions", "Connected sessions", "threads", [("threads_connected", "threads", "#475569")],
     "Threads_connected on the primary (the fence ends the application's sessions).", False),
]
PLOT_BEFORE_S = 600.0  # how much of the time before the switchover the plots show, at most
PLOT_AFTER_S = 1800.0  # and after the last switchover/rollback


def render_cluster(c: ClusterData, anchor: str) -> str:
    """The ``<section class="cluster">`` of one deployment."""
    if c.deployment.provider == "rds":  # no SQL sampler on RDS: its own panel instead of empty plots
        body = [_rds_panel(c), checks_table(c), decisions_table(c), journal_table(c), checkpoints_table(c)]
    else:
        body = [_plots(c), checks_table(c), replay_table(c), decisions_table(c), journal_table(c),
                checkpoints_table(c), phase_figures_table(c)]
    return "".join([f'<section class="cluster" id="{anchor}" data-cluster="{escape(c.deployment.cluster)}">',
                    _header(c), _timeline(c), *body, "</section>"])


def _rds_panel(c: ClusterData) -> str:
    """What AWS says: the blue/green deployment, green's and the old environment's identifiers,
    the switchover's timeline from RDS."""
    facts = c.deployment.facts or {}
    bg = facts.get("blue_green") or {}
    source = (facts.get("source") or {}).get("identifier") or c.deployment.spec.get("db_instance_identifier") \
        or c.deployment.spec.get("db_cluster_identifier") or "-"
    green = (facts.get("green") or {}).get("identifier") or "-"
    sw = facts.get("switchover") or {}
    rows = [("blue/green deployment", bg.get("id") or "-"), ("status at AWS", bg.get("bg_status") or "-"),
            ("blue (source)", source), ("green", green),
            ("old environment after the switchover", f"{source}-old1" if sw.get("completed_at") else "-"),
            ("switchover requested", sw.get("requested_at") or "-"),
            ("switchover completed (RDS)", sw.get("completed_at") or "-")]
    items = "".join(f"<div><b>{escape(k)}</b>{escape(str(v))}</div>" for k, v in rows)
    return (f'<h3>Amazon RDS</h3><div class="meta rds" data-rds="1">{items}</div>'
            '<p class="sub">RDS clusters have no SQL sampler: their evidence is CloudWatch\'s (checks below).</p>')


def _header(c: ClusterData) -> str:
    d = c.deployment
    start, end = span(c)
    facts = [("deployment", d.id), ("provider", d.provider), *_endpoints(d.spec), ("started", stamp(start)), ("duration", dur(end - start) if d.finished_at else "in flight"),
             ("switchover", f"{num(d.switch_duration_ms)} ms"), ("writes blocked", f"{num(d.writes_blocked_ms)} ms")]
    meta = "".join(f"<div><b>{escape(k)}</b>{escape(str(v))}</div>" for k, v in facts)
    ok = d.phase == "COMPLETED"
    reason = d.reason or (("switched; the old environment is kept for the retention period (rollback: a blue/green deployment back)"
                           if d.provider == "rds" else "switched; green is primary, blue its reverse replica")
                          if ok else "")
    return (f"<h2>{escape(d.cluster)} {badge(d.phase)}</h2><div class=\"meta\">{meta}</div>"
            + (f'<p class="reason{" ok" if ok else ""}">{escape(reason)}</p>' if reason else "") + _paths(c))


def _paths(c: ClusterData) -> str:
    """The application paths other than the registry, and where the journal says each points."""
    from bgqueue.app.views import application_paths

    steps = [{"name": s.name, "detail": s.detail} for s in c.steps]
    rows = application_paths(c.deployment.spec, steps, None)[1:]
    if not rows:
        return ""
    items = "".join(f'<li class="{"ok" if p["ok"] else "bad"}"><b>{escape(p["path"])}</b> → {escape(p["points_at"])}'
                    + (f": {escape(p['error'][:300])}" if p.get("error") else "") + "</li>" for p in rows)
    return f'<ul class="paths" data-paths="{len(rows)}">{items}</ul>'



def _endpoints(spec: dict) -> list[tuple[str, str]]:
    """blue and green as host:port (mysql provider), or the RDS source (rds provider)."""
    out = [(side, f"{spec[side].get('host')}:{spec[side].get('port')}") for side in ("blue", "green")
           if isinstance(spec.get(side), dict)]
    if not out and spec.get("region"):
        source = spec.get("db_instance_identifier") or spec.get("db_cluster_identifier") or "-"
        out = [("region", str(spec["region"])), ("source", str(source))]
    return out


def _timeline(c: ClusterData) -> str:
    start, end = span(c)
    bars = []
    for phase, entered, left in c.windows:
        x0 = entered - c.reference
        if left is None and phase in TERMINAL:
            bars.append(Bar(phase, x0, None, PHASE_COLORS.get(phase, "#64748b"), clock(entered)))
        else:
            stop = (left if left is not None else end) - c.reference
            note = dur(left - entered) if left is not None else dur(end - entered) + " (now)"
            bars.append(Bar(phase, x0, stop, PHASE_COLORS.get(phase, "#64748b"), note))
    ticks = [Tick(ts(x.at) - c.reference, VERDICT_COLORS.get(x.verdict, "#64748b"),
                  f"{x.kind} round {x.round}: {x.verdict}" + "".join(f"; {r}" for r in x.reasons or []))
             for x in c.decisions]
    pad = max(0.5, (end - start) * 0.02)
    svg = phase_timeline(bars, ticks, c.events, (start - c.reference - pad, end - c.reference + pad))
    verdicts = "".join(f'<span class="swatch" style="background:{VERDICT_COLORS.get(v, "#64748b")}"></span>{escape(v)}'
                       for v in dict.fromkeys(x.verdict for x in c.decisions))
    return (f"<h3>Timeline</h3><p class=\"legend-line\">x: time from {escape(c.reference_label)} at "
            f"{clock(c.reference)} UTC · dashed lines: switchover / rollback · shaded: writes blocked "
            f"(fence → route flip){' · decisions:' + verdicts if verdicts else ''}</p>{svg}")


def plot_range(c: ClusterData) -> tuple[float, float]:
    """The plots' x range (relative seconds): the data and the events, at most PLOT_BEFORE_S before
    the first event and PLOT_AFTER_S after the last one."""
    xs = [t - c.reference for pts in c.points.values() for t in (pts[0][0], pts[-1][0]) if pts]
    xs += [e.x for e in c.events] + [e.band_from for e in c.events if e.band_from is not None]
    if not xs:
        start, end = span(c)
        xs = [start - c.reference, end - c.reference]
    lo, hi = min(xs), max(xs)
    if c.events:
        lo = max(lo, min(e.x for e in c.events) - PLOT_BEFORE_S)
        hi = min(hi, max(e.x for e in c.events) + PLOT_AFTER_S)
    pad = max(0.5, (hi - lo) * 0.03)
    return lo - pad, hi + pad


def _plots(c: ClusterData) -> str:
    x_range = plot_range(c)
    figures = []
    for pid, title, unit, metrics, note, wide in PLOTS:
        series = [Series(m, label, color, [(t - c.reference, v) for t, v in c.points.get(m, [])])
                  for m, label, color in metrics]
        legend = "".join(f'<span class="swatch" style="background:{color}"></span>{escape(label)}'
                         for _, label, color in metrics)
        # A wide plot gets a wide drawing, so that its text keeps the size of the others'.
        svg = line_plot(f"plot-{c.deployment.id[:8]}-{pid}", title, unit, series, c.events, x_range,
                        width=1040 if wide else 520, height=180 if wide else 200)
        figures.append(f'<figure class="{"wide" if wide else ""}" data-plot="{pid}"><figcaption>{escape(title)}'
                       f'<span class="legend">{legend}</span></figcaption>{svg}'
                       f'<p class="note">{escape(note)}</p></figure>')
    return (f"<h3>Around the switchover</h3><p class=\"legend-line\">Sampler points kept in the store "
            f"(mean of each second). x: time from {escape(c.reference_label)}.</p>"
            f'<div class="plots">{"".join(figures)}</div>')
