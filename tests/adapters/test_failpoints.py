"""Failpoints' -once actions act the first time across processes only (a chaos round arms one by
deleting its marker); the process really stops (SIGSTOP) or exits (137)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

CODE = "from bgqueue.adapters.failpoints import failpoint; failpoint('x.point'); print('went on')"


def _run(tmp_path, action: str) -> subprocess.Popen:
    env = dict(os.environ, BGQUEUE_FAILPOINTS=f"x.point={action}", BGQUEUE_FAILPOINT_DIR=str(tmp_path))
    return subprocess.Popen([sys.executable, "-c", CODE], env=env, stdout=subprocess.PIPE, text=True)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1].split()[0]


def test_stop_once_stops_the_first_process_only_and_an_armed_point_acts_again(tmp_path):
    first = _run(tmp_path, "stop-once")
    deadline = time.monotonic() + 20
    while _state(first.pid) != "T":
        assert time.monotonic() < deadline, "the process did not stop at its failpoint"
        time.sleep(0.02)
    second = _run(tmp_path, "stop-once")  # the marker exists: it goes on
    assert second.communicate(timeout=20)[0].strip() == "went on"
    os.kill(first.pid, signal.SIGCONT)
    assert first.communicate(timeout=20)[0].strip() == "went on"
    (tmp_path / "failpoint.x.point").unlink()  # armed again
    third = _run(tmp_path, "exit-once")
    assert third.wait(20) == 137
    assert _run(tmp_path, "exit-once").communicate(timeout=20)[0].strip() == "went on"
