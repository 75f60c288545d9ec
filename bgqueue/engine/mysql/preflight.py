"""The mysql provider's preflight: reach every server of the selected clusters and check the topology. Changes nothing.

Run by ``fleet check`` and before ``fleet run`` enqueues anything. Bad input (a wrong topology,
credentials, routing targets that do not exist) stops the whole batch with errors that name the
file, the cluster and the field; the servers' state (replication stopped, a server down, blue
read-only) makes only that cluster NO_GO (``ClusterCheck.state_problems``). Servers
are told apart by identity (server_uuid, or server_id with host and port on MariaDB), never by
the names the fleet file gives them: green must replicate from blue itself, blue and green must
be two servers, and ``engine.preflight`` refuses two clusters naming one server.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bgqueue.adapters.mysql.server import Server, ServerUnreachable, servers
from bgqueue.adapters.routing import targets as routing_targets
from bgqueue.checks import sync
from bgqueue.checks.replay.capture import source_problems
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.outcomes import ClusterCheck

# Global privileges that exempt a session from read_only (SUPER, READ_ONLY ADMIN on MariaDB,
# CONNECTION_ADMIN on MySQL), that lift the fence (SYSTEM_VARIABLES_ADMIN), or that end other
# sessions or stop replication. The sampler's user holds none of them: its heartbeat writes must
# be refused by a fenced server, or the lag it reports after the fence is fiction.
MONITOR_FORBIDDEN = frozenset({
    "ALL PRIVILEGES", "ALL", "SUPER", "READ_ONLY ADMIN", "CONNECTION ADMIN", "CONNECTION_ADMIN",
    "SYSTEM_VARIABLES_ADMIN", "REPLICATION SLAVE ADMIN", "REPLICATION_SLAVE_ADMIN", "SHUTDOWN",
})


def check_cluster(spec: ClusterSpec) -> ClusterCheck:
    out = ClusterCheck(spec.name)
    blue, green = servers(spec)
    try:
        reached = {}
        for name, srv in (("blue", blue), ("green", green)):
            try:
                srv.connect()
                reached[name] = True
                ident = srv.identity()
                out.facts[name] = {"version": srv.version(), "read_only": srv.is_read_only(),
                                   "server_id": ident.server_id, "server_uuid": ident.server_uuid,
                                   "identity": ident.key}
            except ServerUnreachable as e:
                out.state_problems.append((name, str(e)))
            except BgqueueError as e:
                out.problems.append((name, str(e)))
        if len(reached) < 2:
            return out
        if out.facts["blue"]["identity"] == out.facts["green"]["identity"]:
            out.problems.append(("green", f"green {spec.green} is the same server as blue {spec.blue} "
                                          f"({blue.identity().describe()})"))
            return out
        if out.facts["blue"]["server_id"] == out.facts["green"]["server_id"]:
            out.problems.append(("green", f"blue {spec.blue} and green {spec.green} have the same server_id "
                                          f"{out.facts['blue']['server_id']}: a replica ignores its source's events"))
        if out.facts["blue"]["read_only"]:
            out.state_problems.append(("blue", f"blue {spec.blue} is read-only: it is not the writer"))
        state = sync.assess(blue, green, spec.blue)
        out.facts["replication"] = state.as_dict()
        for p in state.problems:
            (out.problems if p in state.topology else out.state_problems).append(("green", p))
        if spec.monitor is not None:
            for srv in (blue, green):
                out.problems += [("monitor.user", p) for p in _monitor_privileges(srv, spec.monitor.user)]
        try:
            spec.replication.password()
        except BgqueueError as e:
            out.problems.append(("replication.password_env", str(e)))
        if spec.replay is not None:
            out.problems += source_problems(spec.replay, blue)
        for i, target in enumerate(spec.routing):
            for problem in routing_targets.probe(target):
                out.problems.append((f"routing.{i}", problem))
    finally:
        blue.close()
        green.close()
    return out


def _monitor_privileges(srv: Server, user: str) -> list[str]:
    """Problems with the monitor user's accounts on one server, read as admin (SHOW GRANTS)."""
    try:
        accounts = srv.global_privileges(user)
    except Exception as e:  # a driver error (the engine names no driver): say what could not be read
        return [f"cannot read the grants of monitor user {user!r} on {srv.label} {srv.endpoint}: "
                f"{e.args[-1] if getattr(e, 'args', None) else e}"]
    if not accounts:
        return [f"monitor user {user!r} has no account on {srv.label} {srv.endpoint}"]
    problems = []
    for account, privileges in sorted(accounts.items()):
        bad = sorted(p for p in privileges if p in MONITOR_FORBIDDEN)
        if bad:
            how = ", ".join(p if privileges[p] == "direct" else f"{p} (through {privileges[p]})" for p in bad)
            problems.append(f"monitor user {account} on {srv.label} {srv.endpoint} holds {how}: a fenced "
                            "(read_only) server would still take its writes; grant it only what the sampler "
                            "needs (PROCESS, REPLICATION CLIENT, SELECT, writes on the heartbeat schema)")
    return problems


def check_clusters(specs: list, parallel: int = 16) -> list[ClusterCheck]:
    """Check clusters concurrently (connects are network-bound); results in the given order."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs)))) as pool:
        return list(pool.map(check_cluster, specs))
