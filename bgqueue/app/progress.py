"""Live progress of a batch, read from the store (the authority), for `fleet run --wait` and the demo."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import validation
from bgqueue.app.terminal import safe
from bgqueue.model.errors import BgqueueError
from bgqueue.model.phases import TERMINAL, Phase

# How far along the lifecycle each phase is, for the bars.
ORDER = [Phase.PENDING, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.PILOTING, Phase.READY,
         Phase.SWITCHING, Phase.CDC_MIGRATING, Phase.MONITORING, Phase.COMPLETED]


def _step(phase: Phase) -> int:
    if phase in TERMINAL:
        return len(ORDER) - 1
    return ORDER.index(phase) if phase in ORDER else ORDER.index(Phase.MONITORING)  # ROLLING_BACK


WHY_EVERY_S = 1.0  # how often the progress reads what validating deployments wait for


class BatchTimeout(BgqueueError):
    exit_code = 1


def wait_for_batch(rt: Runtime, batch_id: str, *, timeout: float = 3600.0, poll_s: float = 0.2,
                   console: Console | None = None) -> list:
    """Poll the store until every deployment of the batch is terminal; show a bar per cluster.
    Each poll reads two columns per deployment; the rows are read whole once, at the end."""
    deadline = time.monotonic() + timeout
    progress = None
    bars: dict[str, int] = {}
    lines = console is not None and not console.is_terminal  # a log: one line per change, no bars
    last: dict[str, str] = {}
    if console is not None and not lines:
        progress = Progress(TextColumn("{task.fields[cluster]:<12}"), BarColumn(),
                            TextColumn("{task.fields[phase]:<18}"), TimeElapsedColumn(),
                            console=console, transient=False)
        progress.start()
    why: dict[str, str] = {}
    why_at = 0.0
    try:
        while True:
            rows = deps.batch_phase_ids(rt.store, batch_id)
            if console is not None:
                if time.monotonic() - why_at >= WHY_EVERY_S:  # what validating deployments wait for
                    why = validation.waiting(rt.store, [d for _, p, d in rows if p == Phase.VALIDATING])
                    why_at = time.monotonic()
                for cluster, phase, dep_id in rows:
                    text = f"{phase}: {why[dep_id]}" if phase == Phase.VALIDATING and dep_id in why else phase
                    if lines:
                        if last.get(cluster) != text:
                            console.print(safe(f"{cluster}: {text}"), highlight=False, soft_wrap=True)
                            last[cluster] = text
                        continue
                    if cluster not in bars:
                        # The columns render their text as markup: the names are escaped.
                        bars[cluster] = progress.add_task("", total=len(ORDER) - 1, cluster=safe(cluster),
                                                          phase=safe(text))
                    progress.update(bars[cluster], completed=_step(Phase(phase)), phase=safe(text[:200]))
            if rows and all(Phase(phase) in TERMINAL for _, phase, _ in rows):
                return deps.batch_deployments(rt.store, batch_id)
            if time.monotonic() > deadline:
                raise BatchTimeout(f"batch {batch_id} not finished after {timeout:g}s; it goes on: "
                                   f"bgqueue status {batch_id}")
            time.sleep(poll_s)
    finally:
        if progress is not None:
            progress.stop()
