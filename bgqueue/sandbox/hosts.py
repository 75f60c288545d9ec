"""Worker "hosts" on one machine: Linux network namespaces joined to the root side by veth links.

Layout (``prefix`` names everything, so leftovers of a crashed run are found and removed):

  root namespace   bridge ``{prefix}-srv`` (no ports; it only holds the servers' addresses, one
                   /32 each from 10.{net}.0.0/24, so a partition can cut one server and not the others);
                   veth end ``{prefix}-h{i}r`` with 10.{net}.{i}.1/24 for host i
  namespace        ``{prefix}-h{i}``: lo, veth end ``{prefix}-h{i}n`` with 10.{net}.{i}.2/24 and a route
                   to 10.{net}.0.0/24 through the root end. Nothing is routed anywhere else.

Servers on the root side listen on loopback AND on an address from ``server_address()``; processes
run in a namespace through ``exec_prefix(host)`` (``ip netns exec``). Faults: ``partition`` (a
blackhole route to one server inside the namespace), ``cut`` (the host's link down), ``kill_all``
(every process in the namespace, SIGKILL). ``teardown()`` undoes everything and is safe to call twice.

Needs root and iproute2. When namespaces cannot be made, ``HostsUnavailable`` says why (the
caller fails with it: a chaos test that silently skipped would prove nothing).
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

from bgqueue.model.errors import BgqueueError

INSTALL_HINT = "sudo apt-get install -y iproute2"
DEFAULT_PREFIX = "bgqc"
DEFAULT_NET = 201  # 10.201.0.0/16
FIRST_SERVER_OCTET = 10


class HostsUnavailable(BgqueueError):
    """Network namespaces or veth links could not be made here; the message says why."""


@dataclass(frozen=True)
class Host:
    index: int
    netns: str
    root_dev: str
    ns_dev: str
    address: str  # the host's own address (its connections come from it)
    gateway: str  # the root end of its link


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise HostsUnavailable(f"`{' '.join(cmd)}` failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r


class HostNet:
    """``count`` worker hosts (network namespaces) and a root-side address pool for servers."""

    def __init__(self, count: int = 3, prefix: str = DEFAULT_PREFIX, net: int = DEFAULT_NET):
        if not re.fullmatch(r"[a-z][a-z0-9]{1,7}", prefix):
            raise ValueError(f"hosts prefix {prefix!r}: 2-8 lower-case letters and digits (interface names are short)")
        if not 1 <= count <= 9:
            raise ValueError(f"hosts count {count}: 1 to 9")
        self.prefix, self.net, self.count = prefix, net, count
        self.bridge = f"{prefix}-srv"
        self.hosts = [Host(i, f"{prefix}-h{i}", f"{prefix}-h{i}r", f"{prefix}-h{i}n", f"10.{net}.{i}.2",
                           f"10.{net}.{i}.1") for i in range(1, count + 1)]
        self.server_net = ipaddress.ip_network(f"10.{net}.0.0/24")
        self.client_net = ipaddress.ip_network(f"10.{net}.0.0/16")
        self._next_server = FIRST_SERVER_OCTET
        self._free: list[str] = []
        self._partitions: set[tuple[str, str]] = set()
        self.up = False

    # --- set-up and tear-down ----------------------------------------------------------------
    @staticmethod
    def check_possible() -> None:
        """Raise HostsUnavailable unless this process can make namespaces (root, iproute2)."""
        if shutil.which("ip") is None:
            raise HostsUnavailable(f"the `ip` command (iproute2) is missing; install it with: {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise HostsUnavailable("network namespaces need root (CAP_NET_ADMIN); this process runs as uid "
                                   f"{os.geteuid()}")

    def setup(self) -> HostNet:
        """Remove leftovers of this prefix, then make the bridge, the namespaces and their links."""
        self.check_possible()
        self.remove_leftovers()
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "link", "set", self.bridge, "up")
            for h in self.hosts:
                _run("ip", "netns", "add", h.netns)
                _run("ip", "link", "add", h.root_dev, "type", "veth", "peer", "name", h.ns_dev)
                _run("ip", "link", "set", h.ns_dev, "netns", h.netns)
                _run("ip", "addr", "add", f"{h.gateway}/24", "dev", h.root_dev)
                _run("ip", "link", "set", h.root_dev, "up")
                self.in_ns(h, "ip", "link", "set", "lo", "up")
                self.in_ns(h, "ip", "addr", "add", f"{h.address}/24", "dev", h.ns_dev)
                self.in_ns(h, "ip", "link", "set", h.ns_dev, "up")
                self.in_ns(h, "ip", "route", "add", str(self.server_net), "via", h.gateway)
        except BaseException:
            self.teardown()
            raise
        self.up = True
        return self

    def remove_leftovers(self) -> list[str]:
        """Delete namespaces and links named with this prefix (a crashed run's); return their names."""
        removed = []
        for ns in _run("ip", "-o", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ", 1)[0].strip()
            if name.startswith(f"{self.prefix}-"):
                _kill_netns(name)
                _run("ip", "netns", "delete", name, check=False)
                removed.append(name)
        for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
            m = re.match(r"\d+:\s+([^:@\s]+)", line)
            if m and m.group(1).startswith(f"{self.prefix}-"):
                _run("ip", "link", "delete", m.group(1), check=False)
                removed.append(m.group(1))
        return removed

    def teardown(self) -> None:
        """Kill what runs in the namespaces, delete them, their links and the bridge."""
        for h in self.hosts:
            _kill_netns(h.netns)
        self.remove_leftovers()
        self._partitions.clear()
        self._free.clear()
        self._next_server = FIRST_SERVER_OCTET
        self.up = False

    def __enter__(self) -> HostNet:
        return self.setup()

    def __exit__(self, *exc) -> None:
        self.teardown()

    # --- addresses and processes -----------------------------------------------------------
    def server_address(self) -> str:
        """A root-side address every namespace reaches (bind a server to it, and to loopback)."""
        if self._free:
            addr = self._free.pop(0)
        else:
            if self._next_server > 250:
                raise HostsUnavailable(f"no server address left in {self.server_net}")
            addr = f"10.{self.net}.0.{self._next_server}"
            self._next_server += 1
        _run("ip", "addr", "add", f"{addr}/32", "dev", self.bridge)
        return addr

    def release_address(self, addr: str) -> None:
        """Give back an address whose server is stopped (a long run makes thousands of servers)."""
        _run("ip", "addr", "del", f"{addr}/32", "dev", self.bridge, check=False)
        if addr not in self._free:
            self._free.append(addr)

    def host(self, index: int) -> Host:
        return self.hosts[index - 1]

    @staticmethod
    def exec_prefix(h: Host) -> list[str]:
        """Prefix a command with this to run it inside the host (the command keeps its pid: ip execs it)."""
        return ["ip", "netns", "exec", h.netns]

    def in_ns(self, h: Host, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(*self.exec_prefix(h), *cmd, check=check)

    @staticmethod
    def pids(h: Host) -> list[int]:
        """Every process running in the host's namespace."""
        return _netns_pids(h.netns)

    # --- faults ------------------------------------------------------------------------------
    def kill_all(self, h: Host) -> list[int]:
        """SIGKILL every process of the host (a host that vanished); return their pids."""
        return _kill_netns(h.netns)

    def cut(self, h: Host) -> None:
        """The host's link down: nothing goes in or out (established connections hang)."""
        _run("ip", "link", "set", h.root_dev, "down")

    def restore(self, h: Host) -> None:
        _run("ip", "link", "set", h.root_dev, "up")

    def partition(self, h: Host, address: str) -> None:
        """Drop the host's traffic to one server (a blackhole route inside the namespace)."""
        self.in_ns(h, "ip", "route", "add", "blackhole", f"{address}/32")
        self._partitions.add((h.netns, address))

    def heal(self, h: Host, address: str) -> None:
        self.in_ns(h, "ip", "route", "del", "blackhole", f"{address}/32", check=False)
        self._partitions.discard((h.netns, address))

    def heal_all(self) -> None:
        for h in self.hosts:
            self.restore(h)
            for netns, addr in list(self._partitions):
                if netns == h.netns:
                    self.heal(h, addr)


def _netns_pids(netns: str) -> list[int]:
    r = _run("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()] if r.returncode == 0 else []


def _kill_netns(netns: str) -> list[int]:
    pids = _netns_pids(netns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)  # a stopped process dies only once it runs again
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids
