"""The query-replay section of a cluster's report: the latest ``query_replay`` result's differing
classes (and declared ones), one example each, blue's and green's answers side by side."""
from __future__ import annotations

import json
from html import escape

from bgqueue.app.report.data import ClusterData
from bgqueue.app.report.records import table


def latest_replay(checks) -> dict | None:
    """The evidence of the latest query_replay result that has one (None without)."""
    for r in reversed(list(checks)):
        if r.name == "query_replay" and r.evidence:
            return {"round": r.round, "status": r.status, **r.evidence}
    return None


def _answer(side: dict) -> str:
    if not side:
        return ""
    if "error" in side:
        return f"<b>error</b> {escape(side['error'])}"
    rows = "".join(f"<div><code>{escape(json.dumps(r, default=str)[:200])}</code></div>" for r in side.get("first_rows", []))
    warn = f"<div>warnings: {escape(', '.join(side['warnings']))}</div>" if side.get("warnings") else ""
    return (f"<div>{escape(', '.join(side.get('columns', [])))}</div><div>{side.get('row_count', 0)} row(s), "
            f"{side.get('ms', 0)} ms</div>{rows}{warn}")


def replay_table(c: ClusterData) -> str:
    ev = latest_replay(c.checks)
    if ev is None:
        return ""
    rows = []
    for cls in [*ev.get("differing", []), *ev.get("declared", [])]:
        ex = (cls.get("examples") or [{}])[0]
        what = ", ".join(f"{k} ×{n}" for k, n in (cls.get("differences") or {}).items())
        lat = cls.get("latency") or {}
        if lat.get("regressed"):
            what += f"{'; ' if what else ''}latency p50 ×{lat['p50_ratio']:.1f}, p95 ×{lat['p95_ratio']:.1f}"
        if cls.get("declared"):
            what += f" (declared: {cls['declared']})"
        rows.append(f"<tr><td><code>{escape(cls['fingerprint'][:300])}</code></td><td>{escape(what)}"
                    f"<div class=\"detail\">{escape(ex.get('detail', ''))}</div></td>"
                    f"<td><code>{escape(ex.get('sql', '')[:300])}</code></td><td>{_answer(ex.get('blue', {}))}</td>"
                    f"<td>{_answer(ex.get('green', {}))}</td></tr>")
    note = (f'<p class="legend-line">Round {ev["round"]}: {ev.get("statements_replayed", 0)} statement(s) of '
            f'{ev.get("classes_replayed", 0)} class(es) replayed on blue and green pinned at '
            f'{escape(", ".join(ev.get("positions", [])[:1]))}; {ev.get("classes_differing", 0)} class(es) differ.</p>')
    if not rows:
        return f"<h3>Query replay</h3>{note}"
    return table("Query replay: differing classes", ["class", "difference", "example", "blue", "green"], rows,
                 "", note)
