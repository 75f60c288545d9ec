"""Celery worker processes started by the demo, the tests and the benchmark.

Real ``celery worker`` processes, each in its own process group, stopped with a warm
shutdown (SIGTERM) and killed only if that does not end them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery


class WorkerProcess:
    def __init__(self, env: dict[str, str], *, name: str = "w1", concurrency: int = 4,
                 logfile: Path | None = None, loglevel: str = "WARNING", pool: str = "prefork",
                 wrap: tuple[str, ...] = ()):
        """``wrap``: a command prefix, e.g. ``ip netns exec NS`` (it must exec the worker: same pid)."""
        self.env, self.name, self.concurrency, self.wrap = env, name, concurrency, tuple(wrap)
        self.logfile, self.loglevel, self.pool = logfile, loglevel, pool
        self.proc: subprocess.Popen | None = None
        self.nodename = f"{name}@{socket.gethostname()}"

    def start(self) -> WorkerProcess:
        cmd = [*self.wrap, sys.executable, "-m", "celery", "-A", "tasks", "worker", "-n", self.nodename, "-Q", "bgqueue",
               "-c", str(self.concurrency), "-P", self.pool, "-l", self.loglevel, "-E",
               "--without-gossip", "--without-mingle"]
        out = open(self.logfile, "ab") if self.logfile else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent))
        return self

    def wait_ready(self, broker_url: str, timeout: float = 60.0) -> None:
        """Until the worker answers a ping (a CLI worker takes ~3 s here)."""
        probe = Celery(broker=broker_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"worker {self.nodename} exited with {self.proc.returncode}"
                                       + (f"; see {self.logfile}" if self.logfile else ""))
                if probe.control.ping(destination=[self.nodename], timeout=0.5):
                    return
            raise RuntimeError(f"worker {self.nodename} did not answer a ping within {timeout:g}s")
        finally:
            probe.close()

    def child_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        except FileNotFoundError:
            return []
        return [int(x) for x in out.split()]

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def start_workers(env: dict[str, str], broker_url: str, count: int = 2, concurrency: int = 4,
                  logdir: Path | None = None, prefix: str = "w", loglevel: str = "WARNING") -> list[WorkerProcess]:
    """Start ``count`` workers in parallel and wait until each answers."""
    workers = [WorkerProcess(env, name=f"{prefix}{i + 1}", concurrency=concurrency, loglevel=loglevel,
                             logfile=(logdir / f"{prefix}{i + 1}.log") if logdir else None).start()
               for i in range(count)]
    try:
        for w in workers:
            w.wait_ready(broker_url)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers
