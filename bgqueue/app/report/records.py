"""The record tables of a cluster's section: checks by round, decisions, the journal merged with
the phase changes, checkpoints, and per-phase figures from the sampler's summaries."""
from __future__ import annotations

from html import escape
from itertools import groupby

from bgqueue.app.report.data import ClusterData, ts
from bgqueue.app.report.fmt import badge, clock, compact, dur, num, rel

STATUS_MARK = {"pass": "✓", "fail": "✗", "error": "!", "wait": "…"}


def table(title: str, columns: list[str], rows: list[str], cls: str = "", note: str = "") -> str:
    """A titled table; a column name starting with '#' is right-aligned (a figure)."""
    th = "".join(f'<th class="num">{escape(c[1:])}</th>' if c.startswith("#") else f"<th>{escape(c)}</th>"
                 for c in columns)
    attr = f' class="{cls}"' if cls else ""
    return (f"<h3>{escape(title)}</h3>{note}<table{attr}><thead><tr>{th}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _cell(r) -> str:
    if r is None:
        return '<td class="cell"></td>'
    return (f'<td class="cell" title="{escape(r.reason or "")}"><span class="s-{escape(r.status)}">'
            f'{STATUS_MARK.get(r.status, "?")}</span></td>')


def checks_table(c: ClusterData) -> str:
    """Every pre-switchover check by round (the last 12 rounds), then its latest value and reason."""
    if not c.checks:
        return '<h3>Pre-switchover checks</h3><p class="sub">No check was run.</p>'
    rounds = sorted({r.round for r in c.checks})
    shown = rounds[-12:]
    by = {(r.name, r.round): r for r in c.checks}
    rows = []
    for name in dict.fromkeys(r.name for r in c.checks):
        cells = "".join(_cell(by.get((name, n))) for n in shown)
        last = next(by[(name, n)] for n in reversed(rounds) if (name, n) in by)
        rows.append(f"<tr>{_td(escape(name))}{cells}{_td(badge(last.status, True))}"
                    f"{_td(escape(last.value or ''), 'num')}{_td(escape(last.threshold or ''))}"
                    f"{_td(escape(last.reason or ''), 'detail')}</tr>")
    more = f" (the last {len(shown)} of {len(rounds)} rounds)" if len(shown) < len(rounds) else ""
    note = (f'<p class="legend-line">One column per validation round{more}: ✓ pass · … wait · ✗ fail · '
            "! error. Right: the check's latest result.</p>")
    return table("Pre-switchover checks", ["check", *(f"#{n}" for n in shown), "latest", "#value", "threshold",
                                           "reason"], rows, "matrix", note)


def decisions_table(c: ClusterData) -> str:
    """Pre-switch and monitoring decisions with their reasons; identical consecutive ones (WAIT
    rounds, monitoring HOLDs) are one row with their count."""
    if not c.decisions:
        return '<h3>Decisions</h3><p class="sub">No decision was recorded.</p>'
    rows = []
    for (kind, verdict, reasons), grp in groupby(c.decisions, key=lambda d: (d.kind, d.verdict,
                                                                           tuple(d.reasons or ()))):
        grp = list(grp)
        first, last = grp[0], grp[-1]
        rnd = str(first.round) if len(grp) == 1 else f"{first.round}–{last.round} ({len(grp)}×)"
        none = "every check passed" if kind == "pre_switch" else "no breach: the new primary is within thresholds"
        items = "".join(f"<li>{escape(r)}</li>" for r in reasons) or f'<li class="sub">{none}</li>'
        ul = f'<ul class="reasons">{items}</ul>'
        at = ts(first.at)
        rows.append(f"<tr>{_td(escape(kind.replace('_', '-')))}{_td(rnd, 'num')}{_td(clock(at), 'time')}"
                    f"{_td(rel(at - c.reference), 'num')}{_td(badge(verdict))}{_td(ul)}</tr>")
    return table("Decisions", ["kind", "#round", "at (UTC)", "#T", "verdict", "reasons"], rows)


def journal_table(c: ClusterData) -> str:
    """Every journaled step of every procedure and every phase change, in time order."""
    entries: list[tuple[float, int, str]] = []
    for i, (phase, entered, _) in enumerate(c.windows[1:], 1):
        change = f"phase {escape(c.windows[i - 1][0])} → {escape(phase)}"
        entries.append((entered, 0, f'<tr class="phase-change">{_td(clock(entered), "time")}'
                                    f'{_td(rel(entered - c.reference), "num")}'
                                    f'<td colspan="4" class="nowrap">{change}</td></tr>'))
    for s in c.steps:
        t = ts(s.started_at)
        step = f"{escape(s.procedure)} · {escape(s.name)}"
        entries.append((t, 1, f"<tr>{_td(clock(t), 'time')}{_td(rel(t - c.reference), 'num')}"
                              f"{_td(step, 'nowrap')}{_td(badge(s.status, True))}{_td(num(s.duration_ms), 'num')}"
                              f"{_td(escape(compact(s.detail)), 'detail')}</tr>"))
    entries.sort(key=lambda e: (e[0], e[1]))
    return table("Journal", ["at (UTC)", "#T", "step", "status", "#ms", "detail"], [e[2] for e in entries])


def _coords(file: str | None, pos: int | None) -> str:
    """binlog file:position, or "-" when the provider gave none (RDS gives only the new side's)."""
    return f"{file}:{pos}" if file else "-"


def checkpoints_table(c: ClusterData) -> str:
    """The replication coordinates captured at each switchover and rollback (what CDC resumes from)."""
    if not c.checkpoints:
        return '<h3>Checkpoints</h3><p class="sub">No replication checkpoint was captured.</p>'
    rows = [f"<tr>{_td(escape(cp.kind))}{_td(clock(ts(cp.captured_at)), 'time')}"
            f"{_td(f'{escape(cp.old_primary)} → {escape(cp.new_primary)}')}"
            f"{_td(escape(cp.old_gtid or '-'), 'mono')}"
            f"{_td(escape(_coords(cp.old_binlog_file, cp.old_binlog_pos)), 'mono')}"
            f"{_td(escape(cp.new_gtid or '-'), 'mono')}"
            f"{_td(escape(_coords(cp.new_binlog_file, cp.new_binlog_pos)), 'mono')}</tr>" for cp in c.checkpoints]
    return table("Checkpoints", ["kind", "captured (UTC)", "old → new primary", "old final GTID", "old binlog",
                                 "new GTID", "new binlog"], rows)


# (metric, statistic of its per-phase summary, column)
FIGURES = [("lag_ms", "max", "lag max ms"), ("probe_p99_ms", "max", "probe p99 max ms"),
           ("errors_per_s", "mean", "errors/s mean"), ("writes_per_s", "mean", "writes/s mean"),
           ("qps", "mean", "queries/s mean"), ("threads_connected", "max", "threads max")]


def phase_figures_table(c: ClusterData) -> str:
    """Per phase, a few figures of the sampler's summaries (empty when the sampler wrote none)."""
    by = {(s.phase, s.metric): s for s in c.summaries}
    rows = []
    for p in dict.fromkeys(s.phase for s in c.summaries):
        mine = [s for s in c.summaries if s.phase == p]
        t0, t1 = ts(mine[0].started_at), ts(mine[0].ended_at)
        cells = "".join(_td(num(getattr(by[(p, m)], stat) if (p, m) in by else None, 2), "num")
                        for m, stat, _ in FIGURES)
        rows.append(f"<tr>{_td(badge(p, True))}{_td(dur(t1 - t0 if t0 and t1 else None), 'num')}"
                    f"{_td(str(max(s.count for s in mine)), 'num')}{cells}</tr>")
    if not rows:
        return ""
    return table("Figures by phase", ["phase", "#duration", "#samples", *(f"#{h}" for _, _, h in FIGURES)], rows)
