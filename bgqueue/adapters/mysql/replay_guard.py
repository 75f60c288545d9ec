"""A dead man's switch for green's replication while replay pins it.

A replay run starts this guard as a separate process (its own session, so a signal to the
worker's process group does not reach it) and keeps a pipe to its stdin. The parent writes
``pause`` before it stops green's replication, ``resume`` once it has restarted it (a run pins
several times: its snapshots are kept young), ``done`` at the end. While paused, when the pipe
closes (the replay process died: kill -9, an OOM kill, Celery's hard time limit) or the deadline
passes (the process stalled), the guard connects to green and restarts replication (STOP, which
clears an interrupted pin's UNTIL condition, then START).

The guard is given the endpoint, the user and the *name* of the password's environment variable
(inherited from the parent's environment), never the password itself.

    python -m bgqueue.adapters.mysql.replay_guard   # reads one JSON line of settings, then waits
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from bgqueue.model.schema_base import Credentials, Endpoint


class Guard:
    """The parent's handle: ``done()`` once replication has been resumed by the parent itself."""

    def __init__(self, endpoint: Endpoint, admin: Credentials, tls: dict, *, deadline_s: float):
        settings = {"host": endpoint.host, "port": endpoint.port, "user": admin.user,
                    "password_env": admin.password_env, "tls": tls, "deadline_s": deadline_s}
        self.proc = subprocess.Popen([sys.executable, "-m", "bgqueue.adapters.mysql.replay_guard"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     start_new_session=True, env=dict(os.environ))
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(settings) + "\n").encode())
        self.proc.stdin.flush()
        self._done = False

    def pause(self) -> None:
        """Green's replication is about to be stopped."""
        self._say(b"pause\n")

    def resumed(self) -> None:
        """Green replicates again (the parent restarted it)."""
        self._say(b"resume\n")

    def done(self) -> None:
        """The run is over and replication runs: the guard exits and does nothing."""
        self._end(b"done\n")

    def abandon(self) -> None:
        """The parent could not resume replication itself: the guard resumes it now."""
        self._end(b"")

    def _say(self, line: bytes) -> None:
        if self._done:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _end(self, line: bytes) -> None:
        if self._done:
            return
        self._say(line)
        self._done = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        # Not waited for here: it exits on the line it reads (subprocess reaps it later).


def _resume(settings: dict) -> None:
    from bgqueue.adapters.mysql.replay import resume_sql
    from bgqueue.adapters.mysql.server import Server

    server = Server(Endpoint(host=settings["host"], port=settings["port"]),
                    Credentials(user=settings["user"], password_env=settings["password_env"]),
                    label="green", tls=settings["tls"])
    last: Exception | None = None
    for _attempt in range(30):  # the server may be briefly unreachable: keep trying for ~30 s
        try:
            with server:
                for sql in resume_sql(server.dialect):  # STOP first: clears an interrupted pin's UNTIL
                    server.execute(sql)
            print(f"replay guard: replication on {settings['host']}:{settings['port']} resumed", file=sys.stderr)
            return
        except Exception as e:  # keep trying; say why at the end
            last = e
            time.sleep(1.0)
    print(f"replay guard: could not resume replication: {type(last).__name__ if last else '?'}", file=sys.stderr)


def main() -> None:
    # Raw reads only: a buffered readline could swallow a "done" written right after the settings.
    fd = sys.stdin.fileno()
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            return  # no settings: nothing to guard
        buf += chunk
    line, _, buf = buf.partition(b"\n")
    settings = json.loads(line)
    paused_until: float | None = None  # set while green is paused: resume by then at the latest
    while True:
        while b"\n" in buf:
            cmd, _, buf = buf.partition(b"\n")
            if cmd == b"pause":
                paused_until = time.monotonic() + float(settings["deadline_s"])
            elif cmd == b"resume":
                paused_until = None
            elif cmd == b"done":
                return
        wait = 1.0 if paused_until is None else max(0.0, min(1.0, paused_until - time.monotonic()))
        if paused_until is not None and wait <= 0:
            _resume(settings)  # the parent stalled with green paused: resume anyway
            paused_until = None
            continue
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        chunk = os.read(fd, 256)
        if not chunk:  # the parent died (or gave up resuming): resume if it left green paused
            if paused_until is not None:
                _resume(settings)
            return
        buf += chunk


if __name__ == "__main__":
    main()
