"""Preflight: reach every server of the selected clusters and check the topology. Changes nothing.

Run by ``fleet check`` and before ``fleet run`` enqueues anything: a cluster that fails here
stops the whole batch with an error that names the file, the cluster and the field. Each
provider checks its own clusters (``Provider.preflight``); results come back in the given order.
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
    return [found[s.name] for s in specs]
