"""Preflight: reach every server of the selected clusters and check the topology. Changes nothing.

Run by ``fleet check`` and before ``fleet run`` enqueues anything: a cluster that fails here
stops the whole batch with an error that names the file, the cluster and the field.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bgqueue.checks import sync
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.adapters.mysql.server import Server


@dataclass
class ClusterCheck:
    cluster: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (field, message)
    facts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line of what was found, for `fleet check`."""
        if "blue" in self.facts and "green" in self.facts:
            lag = self.facts.get("replication", {}).get("lag_s")
            return f"blue {self.facts['blue']['version']}, green {self.facts['green']['version']}, lag {lag}s"
        return ", ".join(f"{k} {v}" for k, v in self.facts.items() if isinstance(v, (str, int, float)))


def check_cluster(spec: ClusterSpec) -> ClusterCheck:
    out = ClusterCheck(spec.name)
    t = spec.thresholds
    blue = Server(spec.blue, spec.admin, label="blue", connect_timeout=t.connect_timeout_s, tls=spec.tls)
    green = Server(spec.green, spec.admin, label="green", connect_timeout=t.connect_timeout_s, tls=spec.tls)
    try:
        reached = {}
        for name, srv in (("blue", blue), ("green", green)):
            try:
                srv.connect()
                reached[name] = True
                out.facts[name] = {"version": srv.version(), "read_only": srv.is_read_only()}
            except BgqueueError as e:
                out.problems.append((name, str(e)))
        if len(reached) < 2:
            return out
        if out.facts["blue"]["read_only"]:
            out.problems.append(("blue", f"blue {spec.blue} is read-only: it is not the writer"))
        state = sync.assess(blue, green, spec.blue)
        out.facts["replication"] = state.as_dict()
        for p in state.problems:
            out.problems.append(("green", p))
        try:
            spec.replication.password()
        except BgqueueError as e:
            out.problems.append(("replication.password_env", str(e)))
    finally:
        blue.close()
        green.close()
    return out


def check_any(spec, described=None) -> ClusterCheck:
    """The provider's preflight: SQL sessions for mysql; the RDS API (topology, support) for rds
    (``described``: its source, when described with others)."""
    if spec.provider == "rds":
        from bgqueue.engine.rds.preflight import check_rds_cluster

        return check_rds_cluster(spec, described)
    return check_cluster(spec)


def check_clusters(specs: list, parallel: int = 16) -> list[ClusterCheck]:
    """Check clusters concurrently (connects are network-bound); results in the given order.
    RDS sources are described first, many per call."""
    described: dict = {}
    rds = [s for s in specs if s.provider == "rds"]
    if len(rds) > 1:
        from bgqueue.adapters.aws.source import describe_specs

        described = describe_specs(rds)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs)))) as pool:
        return list(pool.map(lambda s: check_any(s, described.get(s.name)), specs))
