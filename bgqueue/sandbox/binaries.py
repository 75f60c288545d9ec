"""Locate the server binaries the sandbox runs (actionable message when one is missing) and manage their processes."""
from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass

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
    """The command line of ``pid`` joined by spaces ('' when unreadable). For messages only:
    whether a pid is a given server is ``ServerProcess.matches``, never a substring of this."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ServerProcess:
    """What a server the sandbox started looks like in /proc, exactly: its executable, its whole
    command line (paths compared resolved) and its working directory. A pid recorded in a file
    is signalled only when its process is this one: a reused pid, or a pid planted in
    sandbox.json, names some other process."""

    binary: str
    args: tuple[str, ...]  # after the binary; a path value as "--name=" + path is compared resolved
    cwd: str | None = None
    retitled: bool = False  # the process rewrote its argv into one "binary args" title (redis-server)

    def matches(self, pid: int) -> bool:
        try:
            exe = os.path.realpath(f"/proc/{pid}/exe")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.path.realpath(f"/proc/{pid}/cwd")
        except OSError:
            return False
        if self.retitled and len(argv) == 1:
            argv = argv[0].split(" ")
        if exe != os.path.realpath(self.binary) or not argv or os.path.realpath(argv[0]) != exe:
            return False
        if self.cwd is not None and cwd != os.path.realpath(self.cwd):
            return False
        return [_resolved_arg(a) for a in argv[1:]] == [_resolved_arg(a) for a in self.args]


def _resolved_arg(arg: str) -> str:
    name, sep, value = arg.partition("=")
    if sep and name.startswith("--") and value.startswith("/"):
        return f"{name}={os.path.realpath(value)}"
    return arg


def stop_pid(pid: int, timeout: float = 10.0, expect: ServerProcess | None = None) -> None:
    """SIGTERM ``pid`` and wait until it is gone or a zombie; SIGKILL after ``timeout``.

    ``expect`` guards against pid reuse and planted pids: when given, the process is signalled
    only if it is exactly that server process (``ServerProcess.matches``).
    """
    if not pid_running(pid) or (expect is not None and not expect.matches(pid)):
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
