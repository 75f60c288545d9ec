"""The mysql provider's preflight: reach every server of the selected clusters and check the topology. Changes nothing.

Run by ``fleet check`` and before ``fleet run`` enqueues anything: a cluster that fails here
stops the whole batch with an error that names the file, the cluster and the field.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.routing import targets as routing_targets
from bgqueue.checks import sync
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.outcomes import ClusterCheck


def check_cluster(spec: ClusterSpec) -> ClusterCheck:
    out = ClusterCheck(spec.name)
    blue, green = servers(spec)
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
        for i, target in enumerate(spec.routing):
            for problem in routing_targets.probe(target):
                out.problems.append((f"routing.{i}", problem))
    finally:
        blue.close()
        green.close()
    return out


def check_clusters(specs: list, parallel: int = 16) -> list[ClusterCheck]:
    """Check clusters concurrently (connects are network-bound); results in the given order."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs)))) as pool:
        return list(pool.map(check_cluster, specs))
