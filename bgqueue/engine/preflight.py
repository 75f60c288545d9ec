"""Preflight: reach every server of the selected clusters and check the topology. Changes nothing.

Run by ``fleet check`` and before ``fleet run`` enqueues anything: a cluster that fails here
stops the whole batch with an error that names the file, the cluster and the field. Each
provider checks its own clusters (``Provider.preflight``); results come back in the given order.
Across clusters, one server named by two of them (under two names: the loader already refuses
one name twice) is refused here, by server identity: each cluster would take its own lock.
"""
from __future__ import annotations

from bgqueue.engine.providers import provider_for
from bgqueue.model.outcomes import ClusterCheck


def check_clusters(specs: list) -> list[ClusterCheck]:
    by_provider: dict[str, list] = {}
    for s in specs:
        by_provider.setdefault(s.provider, []).append(s)
    found: dict[str, ClusterCheck] = {}
    for group in by_provider.values():
        for spec, result in zip(group, provider_for(group[0]).preflight(group), strict=True):
            found[spec.name] = result
    results = [found[s.name] for s in specs]
    _one_server_one_cluster(results)
    return results


def _one_server_one_cluster(results: list[ClusterCheck]) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for r in results:
        for side in ("blue", "green"):
            identity = (r.facts.get(side) or {}).get("identity")
            if identity is None:
                continue
            if identity in seen and seen[identity][0] != r.cluster:
                cluster, their_side = seen[identity]
                r.problems.append((side, f"{side} is the same server as cluster {cluster!r}'s {their_side} "
                                         f"({identity}): two clusters on one server would each take their own "
                                         "lock and switch it twice"))
            else:
                seen.setdefault(identity, (r.cluster, side))
