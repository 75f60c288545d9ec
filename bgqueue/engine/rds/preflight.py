"""Preflight of one rds cluster: reach the RDS API, describe the source, run the support checks.
Changes nothing (describe and get calls only)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws import topology
from bgqueue.adapters.aws.source import Source, describe_spec, describe_specs
from bgqueue.model.outcomes import ClusterCheck


def check_rds_cluster(spec, described: Source | aws.AwsError | None = None) -> ClusterCheck:
    """What ``fleet check`` shows and what stops ``fleet run`` before anything is created.
    ``described``: the source as ``describe_specs`` found it for many clusters at once."""
    out = ClusterCheck(spec.name)
    field = "db_instance_identifier" if spec.db_instance_identifier else "db_cluster_identifier"
    try:
        if isinstance(described, aws.AwsError):
            raise described
        src = described if described is not None else describe_spec(spec)
    except aws.AwsError as e:
        out.problems.append((field, str(e)))
        return out
    out.facts.update({"engine": src.engine, "version": src.engine_version, "status": src.status,
                      "class": src.instance_class or ", ".join(sorted({m.instance_class or "?" for m in src.members})),
                      "kind": src.kind})
    try:
        out.problems += topology.problems(spec, src)
    except aws.AwsError as e:  # transient: the operator runs the command again
        out.problems.append((field, str(e)))
    return out


def check_clusters(specs: list, parallel: int = 16) -> list[ClusterCheck]:
    """Check rds clusters concurrently; their sources are described first, many per call."""
    described = describe_specs(specs) if len(specs) > 1 else {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs)))) as pool:
        return list(pool.map(lambda s: check_rds_cluster(s, described.get(s.name)), specs))
