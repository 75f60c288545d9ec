"""The batch report page: one self-contained HTML file (inline CSS and SVG, no script, no external
resource), an overview of the batch, then one section per cluster."""
from __future__ import annotations

import os
import re
import tempfile
import time
from html import escape
from pathlib import Path

from sqlalchemy import func, select

from bgqueue import __version__
from bgqueue.adapters.metrics.summary import phase_windows
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import MetricSummary
from bgqueue.app.report.cluster import render_cluster
from bgqueue.app.report.data import BatchData, load_batch, span, ts
from bgqueue.app.report.fmt import badge, dur, num, stamp
from bgqueue.app.report.style import CSS
from bgqueue.model.phases import TERMINAL


def render_batch_report(store: Store, batch_id: str) -> str:
    """The HTML report of batch ``batch_id`` (an id or a unique prefix), built from the store alone.
    Raises BadInput when no batch matches."""
    return render(load_batch(store, batch_id))


def write_batch_report(store: Store, batch_id: str, out_path: str | os.PathLike) -> Path:
    """Render the report and write it to ``out_path`` (parent directories created; the file is
    replaced atomically, so a reader never sees half a report). The file is the operator's only
    (mode 0600, whatever the umask): a report names servers, users and reasons. Returns the
    absolute path."""
    html = render_batch_report(store, batch_id)
    path = Path(out_path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        os.fchmod(fd, 0o600)  # said, not assumed: nothing is written before the mode is set
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def wait_for_metrics(store: Store, batch_id: str, timeout: float = 10.0, poll_s: float = 0.2) -> bool:
    """Wait until the sampler has written the summaries and points of the last phase of every
    finished deployment of the batch (it does so within its refresh period, ~2 s, after the
    deployment ends). True when it has; False after ``timeout`` (the report can still be written;
    its plots then end early)."""
    deadline = time.monotonic() + timeout
    while True:
        if all(_last_phase_summarised(store, d.id) for d in deps.batch_deployments(store, batch_id)
               if d.phase in TERMINAL):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def _last_phase_summarised(store: Store, deployment_id: str) -> bool:
    # The last phase that lasted at least a second: a shorter one (READY, ROLLING_BACK) may hold no
    # sample at 4 Hz, and then nothing is ever written for it.
    ended = [left for _, entered, left in phase_windows(store, deployment_id)
             if left is not None and left - entered >= 1.0]
    if not ended:
        return True
    with store.session() as s:
        last = s.execute(select(func.max(MetricSummary.ended_at))
                         .where(MetricSummary.deployment_id == deployment_id)).scalar()
    return last is not None and (ts(last) or 0.0) >= ended[-1] - 0.001


def _anchor(cluster: str) -> str:
    return "cluster-" + re.sub(r"[^A-Za-z0-9_-]", "-", cluster)


def render(data: BatchData) -> str:
    """The page for already loaded batch data."""
    b = data.batch
    created, finished = ts(b.created_at), ts(b.finished_at)
    counts: dict[str, int] = {}
    for c in data.clusters:
        counts[c.deployment.phase] = counts.get(c.deployment.phase, 0) + 1
    outcome = " ".join(f"{badge(p)} ×{n}" for p, n in sorted(counts.items()))
    meta = [("batch", b.id), ("fleet", b.fleet_name), ("fleet file", b.fleet_path),
            ("fleet sha256", b.fleet_sha256[:16] + "…"), ("requested by", b.requested_by or "-"),
            ("status", b.status), ("started", stamp(created)),
            ("duration", dur(finished - created) if created and finished else "in flight")]
    head = "".join(f"<div><b>{escape(k)}</b>{escape(str(v))}</div>" for k, v in meta)
    rows = []
    for c in data.clusters:
        d = c.deployment
        start, end = span(c)
        pre = [x for x in c.decisions if x.kind == "pre_switch"]
        rollbacks = sum(1 for e in c.events if e.kind == "rollback")
        rows.append(
            f'<tr><td><a href="#{_anchor(d.cluster)}">{escape(d.cluster)}</a></td><td>{badge(d.phase)}</td>'
            f"<td class=\"num\">{len(pre)}</td><td>{badge(pre[-1].verdict, True) if pre else '-'}</td>"
            f"<td class=\"num\">{num(d.switch_duration_ms)}</td><td class=\"num\">{num(d.writes_blocked_ms)}</td>"
            f"<td class=\"num\">{rollbacks or ''}</td><td class=\"num\">{dur(end - start)}</td>"
            f"<td class=\"detail\">{escape(d.reason or '')}</td></tr>")
    overview = ('<table class="overview"><thead><tr><th>cluster</th><th>outcome</th><th class="num">rounds</th>'
                '<th>go/no-go</th><th class="num">switch ms</th><th class="num">writes blocked ms</th>'
                '<th class="num">rollbacks</th><th class="num">duration</th><th>reason</th></tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")
    sections = "".join(render_cluster(c, _anchor(c.deployment.cluster)) for c in data.clusters)
    title = f"bgqueue batch {b.id[:8]} · {b.fleet_name}"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{escape(title)}</title><style>{CSS}</style></head><body><main>'
            f"<h1>Batch report · {escape(b.fleet_name)}</h1>"
            f'<p class="sub">{len(data.clusters)} cluster(s) · {outcome}</p><div class="meta">{head}</div>'
            f"<h3>Clusters</h3>{overview}{sections}"
            f"<footer>Generated {stamp(data.generated_at.timestamp())} by bgqueue {escape(__version__)} from the "
            "store's records (journal, phase history, checks, decisions, checkpoints, sampler points). "
            "Times are UTC.</footer></main></body></html>\n")
