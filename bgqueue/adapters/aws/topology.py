"""Support checks: what RDS Blue/Green Deployments cannot switch, found BEFORE anything is created.

Used by the preflight (``fleet check`` / ``fleet run``) and again by ``prepare`` (the fleet may
have changed since). Each problem is ``(field, message)``: the fleet file field it concerns and
a reason an operator can act on. Not supported by blue/green (AWS documentation): cross-Region
and cascading read replicas, RDS Proxy targets, Multi-AZ DB clusters, Secrets Manager-managed
master passwords.
"""
from __future__ import annotations

import json
import threading
import time

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.source import Source, replicas_detail

ENGINES = ("mysql", "mariadb", "aurora-mysql")
Problem = tuple[str, str]


def _field(spec) -> str:
    return "db_instance_identifier" if spec.db_instance_identifier else "db_cluster_identifier"


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 3 else None


def replica_problems(spec, src: Source) -> list[Problem]:
    """Cross-Region replicas (ARNs in another Region) and cascading ones (replicas of replicas)."""
    field = _field(spec)
    cross = [r for r in src.replicas if r.startswith("arn:") and _region_of(r) not in (None, src.region)]
    local = [r for r in src.replicas if r not in cross]
    out: list[Problem] = []
    if cross:
        out.append((field, f"{src.kind} {src.identifier} has cross-Region read replicas, which blue/green "
                           f"deployments do not support: {', '.join(cross)} (handle them outside blue/green)"))
    if src.kind == "instance" and local:
        cascading = [f"{d['DBInstanceIdentifier']} → {', '.join(d['ReadReplicaDBInstanceIdentifiers'])}"
                     for d in replicas_detail(src.region, local) if d.get("ReadReplicaDBInstanceIdentifiers")]
        if cascading:
            out.append((field, f"{src.kind} {src.identifier} has cascading read replicas, which blue/green "
                               f"deployments do not support: {'; '.join(cascading)} (handle them outside blue/green)"))
    return out


PROXY_TTL_S = 60.0  # proxies change rarely; a batch's preflight and prepares share one look per process
_proxies: dict[str, tuple[float, dict[str, set[str]]]] = {}
_proxies_lock = threading.Lock()


def proxy_targets(region: str) -> dict[str, set[str]]:
    """Every RDS Proxy of the region and the instance/cluster identifiers it targets (cached PROXY_TTL_S)."""
    with _proxies_lock:
        cached = _proxies.get(region)
        if cached and time.monotonic() - cached[0] < PROXY_TTL_S:
            return cached[1]
    rds = aws.client("rds", region)
    found: dict[str, set[str]] = {}
    for page in rds.get_paginator("describe_db_proxies").paginate():
        for proxy in page.get("DBProxies", []):
            targets = rds.describe_db_proxy_targets(DBProxyName=proxy["DBProxyName"]).get("Targets", [])
            found[proxy["DBProxyName"]] = {x for t in targets for x in (t.get("RdsResourceId"), t.get("TrackedClusterId")) if x}
    with _proxies_lock:
        _proxies[region] = (time.monotonic(), found)
    return found


def proxy_problems(spec, src: Source) -> list[Problem]:
    """RDS Proxy targets: a proxy in front of the source keeps pointing at blue after a switchover."""
    names = {src.identifier, *(m.identifier for m in src.members)}
    hits = sorted(p for p, targets in proxy_targets(src.region).items() if targets & names)
    if not hits:
        return []
    return [(_field(spec), f"{src.kind} {src.identifier} is a target of RDS Proxy {', '.join(hits)}: blue/green "
                           "deployments do not support RDS Proxy (remove the target, switch, then add it back)")]


def source_problems(spec, src: Source) -> list[Problem]:
    """Everything decidable from the description alone."""
    field = _field(spec)
    what = f"{src.kind} {src.identifier}"
    out: list[Problem] = []
    if src.engine not in ENGINES:
        out.append((field, f"{what} runs {src.engine}: the rds provider switches {', '.join(ENGINES)} only"))
    if src.status != "available":
        out.append((field, f"{what} is {src.status!r}, not 'available'"))
    if src.kind == "instance" and src.cluster_identifier:
        out.append((field, f"{what} belongs to cluster {src.cluster_identifier}: name it with "
                           f"db_cluster_identifier instead (blue/green switches the whole cluster)"))
    if src.multi_az_cluster:
        out.append((field, f"{what} is a Multi-AZ DB cluster, which blue/green deployments do not support"))
    if src.replica_of:
        out.append((field, f"{what} is a read replica of {src.replica_of}: blue/green switches the primary"))
    if src.secret_managed_password:
        out.append((field, f"{what} has its master password managed in Secrets Manager, which blue/green "
                           "deployments do not support (turn ManageMasterUserPassword off first)"))
    change = spec.change
    if src.kind == "cluster":
        for name, target in (("instance_class", "TargetDBInstanceClass"), ("allocated_storage", "TargetAllocatedStorage"),
                             ("storage_type", "TargetStorageType"), ("iops", "TargetIops"),
                             ("storage_throughput", "TargetStorageThroughput")):
            if getattr(change, name) is not None:
                out.append((f"change.{name}", f"{target} applies to RDS DB instances, not to cluster {src.identifier}"))
    elif change.cluster_parameter_group is not None:
        out.append(("change.cluster_parameter_group",
                    f"TargetDBClusterParameterGroupName applies to clusters, not to instance {src.identifier}"))
    return out


def app_config_problems(spec) -> list[Problem]:
    """The SSM parameter must exist and hold a JSON object (it is updated at the switchover)."""
    if not spec.app_config_parameter:
        return []
    field = "app_config_parameter"
    try:
        p = aws.client("ssm", spec.region).get_parameter(Name=spec.app_config_parameter, WithDecryption=True)
    except aws.AWS_ERRORS as e:
        return [(field, f"SSM parameter {spec.app_config_parameter}: {aws.explain(e)}")]
    try:
        ok = isinstance(json.loads(p["Parameter"]["Value"]), dict)
    except ValueError:
        ok = False
    # The value may hold a secret: the message never quotes it.
    return [] if ok else [(field, f"SSM parameter {spec.app_config_parameter} does not hold a JSON object")]


def problems(spec, src: Source) -> list[Problem]:
    """Every support problem of ``spec``'s source. AWS refusing to answer (access denied) is a
    problem too; a transient failure (throttling, 5xx) raises AwsError(transient=True) instead, so
    that a step tries again rather than calling the cluster unsupported."""
    out = source_problems(spec, src)
    for check in (replica_problems, proxy_problems):
        what = f"cannot check the {check.__name__.split('_')[0]}s of {src.identifier}"
        try:
            out += check(spec, src)
        except aws.AWS_ERRORS as e:
            if not aws.refused(e):
                raise aws.failure(what, e) from None
            out.append((_field(spec), f"{what}: {aws.explain(e)}"))
        except aws.AwsError as e:
            if e.transient:
                raise
            out.append((_field(spec), str(e)))
    return out + app_config_problems(spec)
