"""Fault injection at named points, for crash-safety tests of server-changing procedures.

Off unless BGQUEUE_FAILPOINTS names the point, e.g. ``switchover.after_fence=exit``.
Actions: ``exit`` ends the process at once (a crashed worker); ``exit-once`` does so only the
first time across processes (a marker file in BGQUEUE_FAILPOINT_DIR), so that the worker
that picks the task up again can finish; ``stop`` stops the process (SIGSTOP: a paused worker,
resumed later by SIGCONT from outside), ``stop-once`` likewise the first time only; ``raise``
raises FailpointHit. A chaos harness arms a ``-once`` point by deleting its marker.
"""
from __future__ import annotations

import os
import signal


class FailpointHit(RuntimeError):
    pass


def failpoint(name: str) -> None:
    spec = os.environ.get("BGQUEUE_FAILPOINTS")
    if not spec:
        return
    for item in spec.split(","):
        point, _, action = item.strip().partition("=")
        if point != name:
            continue
        if action in ("exit-once", "stop-once"):
            marker = os.path.join(os.environ.get("BGQUEUE_FAILPOINT_DIR", "/tmp"), f"failpoint.{name}")
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            if action == "stop-once":
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            os._exit(137)
        if action == "exit":
            os._exit(137)
        if action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        raise FailpointHit(name)
