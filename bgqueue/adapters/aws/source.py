"""What an RDS source (a DB instance or an Aurora / Multi-AZ DB cluster) is, read from the RDS API.

One ``Source`` carries everything the provider decides on: support checks, the blue/green
request, the parameter diff and the cost estimate. Describing costs one call for an instance
(two when it has read replicas) and two for a cluster (the cluster, then its members).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError

NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "DBClusterNotFound"}


class SourceMissing(AwsError):
    """The instance or cluster does not exist (in that region, for these credentials)."""


@dataclass(frozen=True)
class Member:
    identifier: str
    instance_class: str | None
    writer: bool
    parameter_group: str | None = None


@dataclass(frozen=True)
class Source:
    kind: str  # "instance" | "cluster"
    identifier: str
    arn: str
    region: str
    engine: str
    engine_version: str
    status: str
    instance_class: str | None = None  # instances; Multi-AZ DB clusters carry DBClusterInstanceClass here
    storage_type: str | None = None
    allocated_storage: int | None = None
    iops: int | None = None
    storage_throughput: int | None = None
    multi_az: bool = False
    endpoint: str | None = None
    port: int | None = None
    parameter_group: str | None = None  # instance: its DB parameter group; cluster: the writer's
    cluster_parameter_group: str | None = None
    cluster_identifier: str | None = None  # an instance that belongs to a cluster
    replica_of: str | None = None  # ReadReplicaSourceDBInstanceIdentifier / ReplicationSourceIdentifier
    replicas: tuple[str, ...] = ()
    members: tuple[Member, ...] = ()
    multi_az_cluster: bool = False  # a Multi-AZ DB cluster (not Aurora)
    secret_managed_password: bool = False
    deletion_protection: bool = False

    @property
    def writer(self) -> Member | None:
        return next((m for m in self.members if m.writer), None)

    def facts(self) -> dict:
        """JSON-safe facts for the deployment row (no secret: the secret's ARN is not kept either)."""
        d = asdict(self)
        d["members"] = [asdict(m) for m in self.members]
        d["replicas"] = list(self.replicas)
        return d


def _instance(region: str, d: dict) -> Source:
    groups = d.get("DBParameterGroups") or []
    ep = d.get("Endpoint") or {}
    return Source(
        kind="instance", identifier=d["DBInstanceIdentifier"], arn=d["DBInstanceArn"], region=region,
        engine=d.get("Engine", ""), engine_version=d.get("EngineVersion", ""), status=d.get("DBInstanceStatus", ""),
        instance_class=d.get("DBInstanceClass"), storage_type=d.get("StorageType"),
        allocated_storage=d.get("AllocatedStorage"), iops=d.get("Iops"), storage_throughput=d.get("StorageThroughput"),
        multi_az=bool(d.get("MultiAZ")), endpoint=ep.get("Address"), port=ep.get("Port"),
        parameter_group=groups[0]["DBParameterGroupName"] if groups else None,
        cluster_identifier=d.get("DBClusterIdentifier"), replica_of=d.get("ReadReplicaSourceDBInstanceIdentifier"),
        replicas=tuple(d.get("ReadReplicaDBInstanceIdentifiers") or ()),
        secret_managed_password=bool(d.get("MasterUserSecret")), deletion_protection=bool(d.get("DeletionProtection")))


def _cluster(region: str, d: dict, members: list[dict]) -> Source:
    by_id = {m["DBInstanceIdentifier"]: m for m in members}
    ms = []
    for m in d.get("DBClusterMembers") or []:
        inst = by_id.get(m["DBInstanceIdentifier"], {})
        groups = inst.get("DBParameterGroups") or []
        ms.append(Member(m["DBInstanceIdentifier"], inst.get("DBInstanceClass"), bool(m.get("IsClusterWriter")),
                         groups[0]["DBParameterGroupName"] if groups else None))
    writer = next((m for m in ms if m.writer), None)
    return Source(
        kind="cluster", identifier=d["DBClusterIdentifier"], arn=d["DBClusterArn"], region=region,
        engine=d.get("Engine", ""), engine_version=d.get("EngineVersion", ""), status=d.get("Status", ""),
        instance_class=d.get("DBClusterInstanceClass"), storage_type=d.get("StorageType"),
        allocated_storage=d.get("AllocatedStorage"), iops=d.get("Iops"), multi_az=bool(d.get("MultiAZ")),
        endpoint=d.get("Endpoint"), port=d.get("Port"),
        parameter_group=writer.parameter_group if writer else None,
        cluster_parameter_group=d.get("DBClusterParameterGroup"),
        replica_of=d.get("ReplicationSourceIdentifier"), replicas=tuple(d.get("ReadReplicaIdentifiers") or ()),
        members=tuple(ms), multi_az_cluster=bool(d.get("DBClusterInstanceClass")) and not d.get("Engine", "").startswith("aurora"),
        secret_managed_password=bool(d.get("MasterUserSecret")), deletion_protection=bool(d.get("DeletionProtection")))


def describe(region: str, kind: str, identifier: str) -> Source:
    """Describe an instance or a cluster. Raises SourceMissing, or AwsError for any other failure."""
    rds = aws.client("rds", region)
    try:
        if kind == "instance":
            return _instance(region, rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0])
        d = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
        members = []
        if d.get("DBClusterMembers"):
            members = rds.describe_db_instances(
                Filters=[{"Name": "db-cluster-id", "Values": [identifier]}])["DBInstances"]
        return _cluster(region, d, members)
    except aws.AWS_ERRORS as e:
        if aws.error_code(e) in NOT_FOUND:
            raise SourceMissing(f"{kind} {identifier!r} not found in {region}") from None
        raise aws.failure(f"cannot describe {kind} {identifier!r} in {region}", e) from None


def describe_spec(spec) -> Source:
    """The source a fleet file's rds cluster names."""
    kind = "instance" if spec.db_instance_identifier else "cluster"
    return describe(spec.region, kind, spec.source_identifier)


FILTER_VALUES_MAX = 100  # identifiers per describe call (AWS's filter limit)


def describe_specs(specs) -> dict[str, Source | AwsError]:
    """The sources of many clusters, by cluster name, in a few calls: per region and kind, one
    filtered describe per 100 identifiers (and one for the members of up to 100 clusters), instead
    of one or two per cluster. The bulk call is only a fast path: a source it did not return (named
    by ARN, in another case, or really missing) or a chunk whose call failed (an IAM policy that
    allows describing named resources only, throttling) is described alone, as ``describe`` does,
    so the outcome per cluster is the same: a Source, a SourceMissing or an AwsError."""
    groups: dict[tuple[str, str], list] = {}
    for spec in specs:
        groups.setdefault((spec.region, "instance" if spec.db_instance_identifier else "cluster"), []).append(spec)
    out: dict[str, Source | AwsError] = {}
    for (region, kind), members in groups.items():
        rds = aws.client("rds", region)
        for i in range(0, len(members), FILTER_VALUES_MAX):
            chunk = members[i:i + FILTER_VALUES_MAX]
            ids = [s.source_identifier for s in chunk]
            try:
                found = _describe_filtered(rds, region, kind, ids)
            except aws.AWS_ERRORS:
                found = {}
            for s in chunk:
                src = found.get(s.source_identifier.lower())
                if src is None:
                    try:
                        src = describe(region, kind, s.source_identifier)
                    except AwsError as e:
                        src = e
                out[s.name] = src
    return out


def _pages(rds, op: str, key: str, **kwargs) -> list[dict]:
    return [d for page in rds.get_paginator(op).paginate(**kwargs) for d in page[key]]


def _describe_filtered(rds, region: str, kind: str, ids: list[str]) -> dict[str, Source]:
    """Sources by lowercased identifier (RDS identifiers are case-insensitive, and stored lowercase)."""
    if kind == "instance":
        return {d["DBInstanceIdentifier"].lower(): _instance(region, d) for d in _pages(
            rds, "describe_db_instances", "DBInstances", Filters=[{"Name": "db-instance-id", "Values": ids}])}
    clusters = _pages(rds, "describe_db_clusters", "DBClusters", Filters=[{"Name": "db-cluster-id", "Values": ids}])
    with_members = [d["DBClusterIdentifier"] for d in clusters if d.get("DBClusterMembers")]
    instances = _pages(rds, "describe_db_instances", "DBInstances",
                       Filters=[{"Name": "db-cluster-id", "Values": with_members}]) if with_members else []
    return {d["DBClusterIdentifier"].lower(): _cluster(region, d, [m for m in instances
                                                           if m.get("DBClusterIdentifier") == d["DBClusterIdentifier"]])
            for d in clusters}


def identifier_of(arn: str) -> tuple[str, str]:
    """``(kind, identifier)`` of an RDS ARN (``arn:aws:rds:<region>:<acct>:db:<id>`` or ``…:cluster:<id>``)."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[5] not in ("db", "cluster"):
        raise ValueError(f"not an RDS instance or cluster ARN: {arn!r}")
    return ("instance" if parts[5] == "db" else "cluster"), ":".join(parts[6:])


def describe_arn(region: str, arn: str) -> Source:
    kind, identifier = identifier_of(arn)
    return describe(region, kind, identifier)


def replicas_detail(region: str, identifiers: list[str]) -> list[dict]:
    """Descriptions of same-Region replicas (one call), to find cascading ones."""
    if not identifiers:
        return []
    rds = aws.client("rds", region)
    try:
        return rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": identifiers}])["DBInstances"]
    except aws.AWS_ERRORS as e:
        raise aws.failure(f"cannot describe read replicas {', '.join(identifiers)}", e) from None


@dataclass
class Green:
    """The green environment as the deployment row keeps it."""

    kind: str
    identifier: str
    arn: str
    writer_instance: str | None = None
    parameter_group: str | None = None
    cluster_parameter_group: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, src: Source) -> Green:
        writer = src.writer
        return cls(src.kind, src.identifier, src.arn,
                   writer_instance=writer.identifier if writer else (src.identifier if src.kind == "instance" else None),
                   parameter_group=src.parameter_group, cluster_parameter_group=src.cluster_parameter_group)

    def facts(self) -> dict:
        return asdict(self)
