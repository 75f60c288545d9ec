"""Locate the server binaries the sandbox runs (actionable message when one is missing) and manage their processes."""
from __future__ import annotations

import os
import shutil
import signal
import time

from bgqueue.model.errors import BgqueueError

# Searched after PATH: daemons live in sbin, which is often not on a non-root user's PATH.
SEARCH_DIRS = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]

# Debian package that provides each binary (what the operator must install).
PACKAGES = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb-admin": "mariadb-client",
    "mariadb": "mariadb-client",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "openssl": "openssl",
}


class MissingBinary(BgqueueError):
    """A server binary the sandbox needs is not installed."""


def find_binary(name: str) -> str:
    """Return the absolute path of ``name`` (PATH first, then SEARCH_DIRS); raise MissingBinary."""
    found = shutil.which(name)
    if found:
        return found
    for d in SEARCH_DIRS:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    package = PACKAGES.get(name, name)
    raise MissingBinary(f"{name} not found; install it with: sudo apt-get install -y {package}")


# --- processes started from these binaries -------------------------------------------------


def pid_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name is in parentheses and may contain spaces: split after the last ')'.
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_running(pid: int | None) -> bool:
    """True when ``pid`` is a live process (a zombie has already exited: not running)."""
    return pid is not None and pid_state(pid) not in (None, "Z")


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces ('' when unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_pid(pid: int, timeout: float = 10.0, expect: str | None = None) -> None:
    """SIGTERM ``pid`` and wait until it is gone or a zombie; SIGKILL after ``timeout``.

    ``expect`` guards against pid reuse: when given, the process is signalled only if its
    command line contains that text (e.g. the instance's config path).
    """
    if not pid_running(pid) or (expect and expect not in pid_cmdline(pid)):
        _reap(pid)
        return
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_running(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.01)
    _reap(pid)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    # When the process is our own (detached) child, collect it so no zombie stays behind.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: os.PathLike | str, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist), for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
