"""Drive a running HAProxy through its runtime API (the ``stats socket ... level admin``).

I/O only: one command per connection over a plain unix or TCP socket (no socat), parsed into
dataclasses. Standard library only, so it can be used by any layer without pulling in the
engine or the store.

Addresses are ``unix:/path/to/haproxy.sock`` or ``host:port`` (``[::1]:port`` for IPv6).

Weights are absolute (0-256). ``set server b/s weight 10%`` is relative to the server's
*initial* weight, not a share of the backend's traffic: with an initial weight of 1 it
rounds to 0. A read pilot of 90/10 is therefore written as blue 90 / green 10.

Checked against Debian's haproxy 2.6 (``show servers state`` format version 1).
"""
from __future__ import annotations

import csv
import io
import re
import socket
from dataclasses import dataclass, field

DEFAULT_TIMEOUT_S = 5.0
MAX_WEIGHT = 256
STATES = ("ready", "drain", "maint")

# srv_op_state (enum srv_state).
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}

# srv_admin_state bits (enum srv_admin).
ADMF_FMAINT = 0x01  # forced into maintenance (runtime API or `disabled` in the config)
ADMF_IMAINT = 0x02  # maintenance inherited from a tracked server
ADMF_CMAINT = 0x04  # `disabled` in the config: a record only, stays set after `state ready`
ADMF_FDRAIN = 0x08  # forced into drain
ADMF_IDRAIN = 0x10  # drain inherited from a tracked server
ADMF_RMAINT = 0x20  # maintenance because the address did not resolve
ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT  # HAProxy's SRV_ADMF_MAINT mask
ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN

# srv_check_status (enum healthcheck_status), named as `show stat` names them.
CHECK_STATUSES = {
    0: "UNK", 1: "INI", 2: "START", 3: "CHECKED", 4: "HANA", 5: "SOCKERR", 6: "L4OK", 7: "L4TOUT",
    8: "L4CON", 9: "L6OK", 10: "L6TOUT", 11: "L6RSP", 12: "L7TOUT", 13: "L7RSP", 14: "L57DATA",
    15: "L7OK", 16: "L7OKC", 17: "L7STS", 18: "PROCERR", 19: "PROCTOUT", 20: "PROCOK",
}
# The last completed check passed (L7OKC, "conditionally", is an agent asking for no new traffic).
PASSING_CHECKS = frozenset({"L4OK", "L6OK", "L7OK", "PROCOK"})
# srv_check_result (enum chk_result).
CHECK_RESULTS = {0: "unknown", 1: "neutral", 2: "failed", 3: "passed", 4: "condpass"}
# srv_check_state bits (CHK_ST_*).
CHK_ST_CONFIGURED = 0x02
CHK_ST_ENABLED = 0x04
CHK_ST_PAUSED = 0x08  # paused while the server is in maintenance

# Replies HAProxy 2.6 gives for a name it does not know (text, not a status code).
_NO_BACKEND = ("No such backend.", "Can't find backend.", "No such proxy.")
_NO_SERVER = ("No such server.",)
_NAME_OK = re.compile(r"^[A-Za-z0-9_.:-]+$")
_WEIGHT_REPLY = re.compile(r"^(\d+) \(initial (\d+)\)$")


class HAProxyError(Exception):
    """Something is wrong with HAProxy or what was asked of it; the message names the socket,
    the backend and the server involved (also kept as attributes)."""

    def __init__(self, message: str, *, address: str, backend: str | None = None,
                 server: str | None = None, command: str | None = None, reply: str | None = None):
        super().__init__(message)
        self.address = address
        self.backend = backend
        self.server = server
        self.command = command
        self.reply = reply


class HAProxyUnreachable(HAProxyError):
    """The runtime API socket could not be reached (nothing was changed)."""


class UnknownBackend(HAProxyError):
    """HAProxy has no backend of that name."""


class UnknownServer(HAProxyError):
    """The backend has no server of that name."""


class CommandRejected(HAProxyError):
    """HAProxy answered the command with an error text (bad value, permission, unknown command)."""


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state``."""

    backend: str
    name: str
    address: str
    port: int
    op_state: str  # stopped | starting | running | stopping
    admin_flags: int
    weight: int  # current (user) weight
    initial_weight: int
    check_status: str  # of the last completed check: L7OK, L4OK, L4CON, L7TOUT, INI (none yet), ...
    check_result: str  # of the check in progress: "unknown" while one runs, then passed | failed
    check_health: int
    check_flags: int
    seconds_since_change: int

    @property
    def admin_state(self) -> str:
        """ready | drain | maint: what ``set server ... state`` last put it in."""
        if self.admin_flags & ADMF_MAINT:
            return "maint"
        if self.admin_flags & ADMF_DRAIN:
            return "drain"
        return "ready"

    @property
    def has_check(self) -> bool:
        """A health check is configured and enabled (it may be paused by maintenance)."""
        return bool(self.check_flags & CHK_ST_CONFIGURED) and bool(self.check_flags & CHK_ST_ENABLED)

    @property
    def check_paused(self) -> bool:
        """HAProxy does not run health checks on a server in maintenance."""
        return bool(self.check_flags & CHK_ST_PAUSED)

    @property
    def healthy(self) -> bool:
        """Its health check runs, the last one completed passed, and HAProxy considers it up."""
        return (self.has_check and not self.check_paused and self.check_status in PASSING_CHECKS
                and self.op_state == "running")

    @property
    def serving(self) -> bool:
        """New connections may be sent to it (ready, up, weight above 0)."""
        return self.admin_state == "ready" and self.op_state == "running" and self.weight > 0

    def describe(self) -> str:
        check = (f"check {self.check_status}" + (" (paused)" if self.check_paused else "")
                 if self.has_check else "no check")
        return (f"{self.name} {self.address}:{self.port} {self.admin_state}/{self.op_state} "
                f"weight {self.weight} {check}")


@dataclass(frozen=True)
class FlipResult:
    """What flip_writer saw before and after (both servers), and what it sent."""

    backend: str
    to_server: str
    from_server: str
    before: dict[str, ServerState]
    after: dict[str, ServerState]
    commands: tuple[str, ...]
    sessions_cut: int  # sessions on from_server just before `shutdown sessions`

    @property
    def changed(self) -> bool:
        """Whether this call changed anything: False for a repeated flip (no state had to be set,
        no session had to be cut; only the harmless `shutdown sessions` was sent again)."""
        return any(not c.startswith("shutdown sessions") for c in self.commands) or self.sessions_cut > 0


@dataclass
class HAProxyRuntime:
    """A client of one HAProxy's runtime API at ``address`` (``unix:/path`` or ``host:port``)."""

    address: str
    timeout: float = DEFAULT_TIMEOUT_S
    _target: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._target = parse_address(self.address)

    # --- transport ------------------------------------------------------------------------

    def command(self, cmd: str) -> str:
        """Send one command on a new connection and return HAProxy's whole reply (stripped)."""
        if "\n" in cmd or ";" in cmd:
            raise ValueError(f"one command at a time, without ';' or newlines: {cmd!r}")
        family, target = self._target
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(target)
                s.sendall(cmd.encode() + b"\n")
                chunks = []
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except OSError as e:
            raise HAProxyUnreachable(
                f"haproxy runtime API at {self.address} is unreachable ({e.__class__.__name__}: {e}) "
                f"while sending {cmd!r}", address=self.address, command=cmd,
            ) from e
        return b"".join(chunks).decode(errors="replace").strip()

    def _run(self, cmd: str, backend: str | None = None, server: str | None = None) -> str:
        """command() for the commands whose success is an empty reply."""
        reply = self.command(cmd)
        if reply:
            raise self._error(cmd, reply, backend, server)
        return reply

    def _error(self, cmd: str, reply: str, backend: str | None, server: str | None) -> HAProxyError:
        first = reply.splitlines()[0] if reply else reply
        where = f"haproxy at {self.address}"
        kw = dict(address=self.address, backend=backend, server=server, command=cmd, reply=reply)
        if first in _NO_BACKEND:
            return UnknownBackend(f"{where} has no backend {backend!r} ({cmd!r} answered {first!r})", **kw)
        if first in _NO_SERVER:
            return UnknownServer(f"{where}: backend {backend!r} has no server {server!r} "
                                 f"({cmd!r} answered {first!r})", **kw)
        target = f"{backend}/{server}" if server else (backend or "-")
        return CommandRejected(f"{where} rejected {cmd!r} for {target}: {first!r}", **kw)

    # --- reading --------------------------------------------------------------------------

    def show_servers_state(self, backend: str | None = None) -> list[ServerState]:
        """``show servers state [backend]`` parsed; all backends when ``backend`` is None."""
        cmd = "show servers state" + (f" {_name(backend, 'backend')}" if backend else "")
        reply = self.command(cmd)
        lines = reply.splitlines()
        if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# "):
            raise self._error(cmd, reply, backend, None)
        cols = lines[1][2:].split()
        out = []
        for line in lines[2:]:
            if not line.strip():
                continue
            row = dict(zip(cols, line.split(), strict=False))
            out.append(ServerState(
                backend=row["be_name"], name=row["srv_name"], address=row["srv_addr"],
                port=int(row["srv_port"]), op_state=OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"]),
                admin_flags=int(row["srv_admin_state"]), weight=int(row["srv_uweight"]),
                initial_weight=int(row["srv_iweight"]),
                check_status=CHECK_STATUSES.get(int(row["srv_check_status"]), row["srv_check_status"]),
                check_result=CHECK_RESULTS.get(int(row["srv_check_result"]), row["srv_check_result"]),
                check_health=int(row["srv_check_health"]), check_flags=int(row["srv_check_state"]),
                seconds_since_change=int(row["srv_time_since_last_change"]),
            ))
        return out

    def servers(self, backend: str) -> dict[str, ServerState]:
        """The backend's servers by name (UnknownBackend when there is no such backend)."""
        return {s.name: s for s in self.show_servers_state(backend)}

    def server_state(self, backend: str, server: str) -> ServerState:
        """One server's state (UnknownBackend / UnknownServer naming both)."""
        found = self.servers(backend).get(server)
        if found is None:
            raise self._missing(backend, server)
        return found

    def _missing(self, backend: str, server: str) -> UnknownServer:
        return UnknownServer(f"haproxy at {self.address}: backend {backend!r} has no server {server!r}",
                             address=self.address, backend=backend, server=server)

    def get_weight(self, backend: str, server: str) -> int:
        """The server's current weight (``get weight``)."""
        cmd = f"get weight {_name(backend, 'backend')}/{_name(server, 'server')}"
        reply = self.command(cmd)
        m = _WEIGHT_REPLY.match(reply)
        if not m:
            raise self._error(cmd, reply, backend, server)
        return int(m.group(1))

    def sessions(self, backend: str, server: str) -> int:
        """Current sessions on the server (``scur`` of ``show stat``)."""
        cmd = f"show stat {_name(backend, 'backend')} 4 -1"
        reply = self.command(cmd)
        if not reply.startswith("# "):
            raise self._error(cmd, reply, backend, server)
        for row in csv.DictReader(io.StringIO(reply[2:])):
            if row.get("pxname") == backend and row.get("svname") == server:
                return int(row["scur"] or 0)
        raise self._missing(backend, server)

    # --- changing -------------------------------------------------------------------------

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``set server <backend>/<server> state ready|drain|maint``."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        self._run(f"set server {_name(backend, 'backend')}/{_name(server, 'server')} state {state}",
                  backend, server)

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """``set server <backend>/<server> weight <0-256>`` (absolute, never a %)."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of {backend}/{server} must be an int 0-{MAX_WEIGHT}, not {weight!r}")
        self._run(f"set server {_name(backend, 'backend')}/{_name(server, 'server')} weight {weight}",
                  backend, server)

    def shutdown_sessions(self, backend: str, server: str) -> None:
        """``shutdown sessions server <backend>/<server>``: cut its established connections."""
        self._run(f"shutdown sessions server {_name(backend, 'backend')}/{_name(server, 'server')}",
                  backend, server)

    # --- what a switchover needs ----------------------------------------------------------

    def flip_writer(self, backend: str, to_server: str, from_server: str, force: bool = False) -> FlipResult:
        """Send new connections to ``to_server`` and cut those still on ``from_server``.

        ``to`` is set ready, then ``from`` maint, then ``from``'s sessions are shut down. Until
        the second command lands (one runtime API round trip) both servers take new
        connections: fence ``from`` (read_only) before flipping. Idempotent: a state already
        reached is not set again, and a repeat reports ``changed == False``.
        Refuses (nothing changed) when a server is unknown, or when ``to``'s running health
        check says it is down, unless ``force``.
        """
        if to_server == from_server:
            raise ValueError(f"flip_writer on {backend}: to and from are both {to_server!r}")
        before = self._pair(backend, to_server, from_server)
        to = before[to_server]
        if (not force and to.has_check and not to.check_paused and to.op_state != "running"):
            raise HAProxyError(
                f"haproxy at {self.address}: not flipping {backend} to {to_server!r}: its health check "
                f"says it is down ({to.describe()}); nothing was changed", address=self.address,
                backend=backend, server=to_server)
        commands: list[str] = []
        if to.admin_state != "ready":
            self.set_state(backend, to_server, "ready")
            commands.append(f"set server {backend}/{to_server} state ready")
        if before[from_server].admin_state != "maint":
            self.set_state(backend, from_server, "maint")
            commands.append(f"set server {backend}/{from_server} state maint")
        cut = self.sessions(backend, from_server)
        self.shutdown_sessions(backend, from_server)
        commands.append(f"shutdown sessions server {backend}/{from_server}")
        after = self._pair(backend, to_server, from_server)
        if after[to_server].admin_state != "ready" or after[from_server].admin_state != "maint":
            raise HAProxyError(
                f"haproxy at {self.address}: after flipping {backend}, {after[to_server].describe()}; "
                f"{after[from_server].describe()} (changed by someone else meanwhile?)",
                address=self.address, backend=backend, server=to_server)
        return FlipResult(backend, to_server, from_server, before, after, tuple(commands), cut)

    def _pair(self, backend: str, *names: str) -> dict[str, ServerState]:
        servers = self.servers(backend)
        for n in names:
            if n not in servers:
                raise self._missing(backend, n)
        return {n: servers[n] for n in names}

    def readiness(self, backend: str, blue: str, green: str,
                  expected_weights: dict[str, int] | None = None, settle_s: int = 1) -> list[str]:
        """What stops a switchover of ``backend`` from ``blue`` to ``green``; empty means ready.

        Green must be checked and up by HAProxy itself: a server in maintenance has its health
        check paused (its health is unknown, and the result shown may be stale), so put green in
        ``drain`` (no new connections, checks running) beforehand. Leaving maintenance, HAProxy
        calls a server up at once and shows its last check from *before* the maintenance, even
        when it died meanwhile; so green's state must not have changed for ``settle_s`` seconds
        (choose at least ``fall`` x the check interval; 0 skips this). HAProxy counts whole
        clock seconds, so up to one more second may pass before that is seen.
        Raises HAProxyUnreachable when HAProxy cannot be asked at all.
        """
        where = f"haproxy at {self.address}"
        try:
            servers = self.servers(backend)
        except UnknownBackend:
            return [f"{where} has no backend {backend!r}"]
        problems = [f"{where}: backend {backend!r} has no server {n!r} (it has: "
                    f"{', '.join(servers) or 'none'})" for n in (blue, green) if n not in servers]
        g = servers.get(green)
        if g is not None:
            if not g.has_check:
                problems.append(f"{where}: {backend}/{green} has no health check enabled, so HAProxy "
                                f"cannot vouch for it ({g.describe()})")
            elif g.admin_state == "maint" or g.check_paused:
                problems.append(f"{where}: {backend}/{green} is in maintenance, where HAProxy pauses its "
                                f"health check: its health is unknown; set it to drain first ({g.describe()})")
            elif g.check_status in ("INI", "START", "UNK"):
                problems.append(f"{where}: {backend}/{green} has not been health-checked yet ({g.describe()})")
            elif not g.healthy:
                how = "is down" if g.op_state != "running" else "is failing its health check (not down yet)"
                problems.append(f"{where}: {backend}/{green} {how}: last check {g.check_status} "
                                f"({g.describe()})")
            elif settle_s > 0 and g.seconds_since_change < settle_s + 1:
                problems.append(f"{where}: {backend}/{green} changed state less than {settle_s}s ago: "
                                f"wait for fresh health checks ({g.describe()})")
        for name, want in (expected_weights or {}).items():
            s = servers.get(name)
            if s is None:
                if name not in (blue, green):
                    problems.append(f"{where}: backend {backend!r} has no server {name!r} (weight expected)")
            elif s.weight != want:
                problems.append(f"{where}: {backend}/{name} has weight {s.weight}, expected {want}")
        return problems

    def set_read_shares(self, backend: str, shares: dict[str, int]) -> dict[str, int]:
        """Set absolute weights (e.g. {"blue": 90, "green": 10}); all names are checked first.

        Returns the weights read back from HAProxy.
        """
        for server, weight in shares.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
                raise ValueError(f"weight of {backend}/{server} must be an int 0-{MAX_WEIGHT}, not {weight!r}")
        self._pair(backend, *shares)
        for server, weight in shares.items():
            self.set_weight(backend, server, weight)
        return {server: self.get_weight(backend, server) for server in shares}


def parse_address(address: str) -> tuple[int, object]:
    """``unix:/path`` -> (AF_UNIX, path); ``host:port`` / ``[v6]:port`` -> (AF_INET[6], (host, port))."""
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if not path:
            raise ValueError(f"haproxy address {address!r}: empty unix socket path")
        return socket.AF_UNIX, path
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s]+):(\d+)", address)
    if not m:
        raise ValueError(f"haproxy address {address!r}: expected unix:/path or host:port")
    if m.group(1):
        return socket.AF_INET6, (m.group(1), int(m.group(2)))
    return socket.AF_INET, (m.group(3), int(m.group(4)))


def _name(value: str, what: str) -> str:
    # Names go into a command line: no spaces, '/', ';' or newlines can slip through.
    if not isinstance(value, str) or not _NAME_OK.match(value):
        raise ValueError(f"invalid haproxy {what} name {value!r}")
    return value
