"""The fleet file: what an SRE writes to describe clusters, their blue and green, and the change.

A fleet file is YAML validated by pydantic with unknown keys forbidden. Credentials appear
only as the *names* of environment variables (``password_env``); the loader never reads a
password into the model, so a cluster spec can be stored and sent to workers as it is.
Errors name the file, the line, the cluster and the field.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator

from bgqueue.model.cdc import PipelineSpec
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet_rules import fleet_conflicts
from bgqueue.model.rds_evidence import AwsCost, RdsEvidence
from bgqueue.model.replay import DeclaredDifference, ReplaySpec
from bgqueue.model.routing import MaintenanceSpec, RegistryTarget, RoutingTarget
from bgqueue.model.schema_base import Credentials, Endpoint, Tls, credential_scope_problem
from bgqueue.model.schema_base import StrictModel as _Strict
from bgqueue.model.thresholds import ThresholdOverrides, Thresholds

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Change(_Strict):
    """What green carries. Free-form for the mysql provider; recorded with the deployment."""

    description: str = ""
    engine_version: str | None = None
    instance_class: str | None = None
    parameters: dict[str, str | int | float] = Field(default_factory=dict)
    replay_differences: list[DeclaredDifference] = Field(default_factory=list, exclude_if=lambda v: not v)


def change_key(change: Change) -> str:
    canonical = json.dumps(change.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ClusterSpec(_Strict):
    """One cluster: a blue primary and a green GTID replica of it."""

    name: str = Field(pattern=NAME_RE)
    provider: Literal["mysql"]
    tier: str = "default"
    blue: Endpoint
    green: Endpoint
    admin: Credentials
    replication: Credentials
    monitor: Credentials | None = Field(
        default=None,
        description="sampler user: heartbeat writes and status reads; must NOT be exempt from read_only",
    )
    app_users: list[str] = Field(
        default_factory=list,
        description="the application's users (reported); the fence ends every client session, privileged ones too",
    )
    critical_tables: list[str] = Field(default_factory=list)
    tls: Tls = Field(
        default_factory=Tls,
        description="TLS to the servers: disabled (loopback/test only), preferred, required, or "
                    "{mode: verify, ca: /path/ca.pem} (certificate chain and host name checked)",
    )
    change: Change = Field(default_factory=Change)
    signoffs: list[str] = Field(default_factory=list, description="teams that must sign off this change")
    staging: str | None = Field(default=None, pattern=NAME_RE,
                                description="staging twin: its latest deployment of the same change must have completed")
    pipelines: list[PipelineSpec] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    routing: list[RoutingTarget] = Field(
        default_factory=list, description="extra application paths flipped with the registry (HAProxy, Route 53, SSM)")
    maintenance: MaintenanceSpec = Field(default_factory=MaintenanceSpec)
    replay: ReplaySpec | None = Field(default=None, description="query replay on blue and green at one GTID point")

    @field_validator("critical_tables")
    @classmethod
    def _qualified(cls, tables: list[str]) -> list[str]:
        for t in tables:
            if not re.fullmatch(r"[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+", t):
                raise ValueError(f"{t!r} is not of the form database.table")
        return tables

    @model_validator(mode="after")
    def _distinct(self) -> ClusterSpec:
        # blue != green, and every rule across clusters, is in fleet_rules (located at the field).
        names = [p.name for p in self.pipelines]
        if len(names) != len(set(names)):
            raise ValueError("two pipelines share a name (their state in Redis would collide)")
        labels = [t.label for t in self.routing]
        if len(labels) != len(set(labels)):
            raise ValueError("two routing targets name the same path")
        return self

    def routing_targets(self) -> list[RoutingTarget]:
        """Every path applications use, the registry first (it is always there)."""
        return [RegistryTarget(), *(t for t in self.routing if not isinstance(t, RegistryTarget))]

    def credential_envs(self) -> list[tuple[str, Credentials]]:
        out = [("admin", self.admin), ("replication", self.replication)]
        if self.monitor is not None:
            out.append(("monitor", self.monitor))
        for i, p in enumerate(self.pipelines):
            user = getattr(p, "user", None)
            if user is not None:
                out.append((f"pipelines.{i}.user", user))
        return out

    def change_key(self) -> str:
        """Fingerprint of the change green carries: sign-offs and the staging gate are per change."""
        return change_key(self.change)


class RdsChange(Change):
    """What the RDS green environment carries (CreateBlueGreenDeployment's Target* parameters)."""

    parameter_group: str | None = None  # TargetDBParameterGroupName
    cluster_parameter_group: str | None = None  # TargetDBClusterParameterGroupName (Aurora)
    allocated_storage: int | None = Field(default=None, gt=0)  # TargetAllocatedStorage (GiB)
    storage_type: str | None = None  # TargetStorageType
    iops: int | None = Field(default=None, gt=0)  # TargetIops
    storage_throughput: int | None = Field(default=None, gt=0)  # TargetStorageThroughput


class RdsAlarms(_Strict):
    """Which CloudWatch alarms belong to the cluster: by name prefix and/or by tag."""

    prefix: str | None = None
    tag: dict[str, str] = Field(default_factory=dict)


class RdsClusterSpec(_Strict):
    """A cluster on Amazon RDS / Aurora MySQL, switched by the RDS Blue/Green Deployments API.

    Credentials come from the standard boto3 chain (profile, role, environment), never from here.
    """

    name: str = Field(pattern=NAME_RE)
    provider: Literal["rds"]
    tier: str = "default"
    region: str = Field(min_length=1)
    db_instance_identifier: str | None = None
    db_cluster_identifier: str | None = None  # Aurora
    change: RdsChange = Field(default_factory=RdsChange)
    alarms: RdsAlarms = Field(default_factory=RdsAlarms)
    app_config_parameter: str | None = Field(
        default=None, description="SSM parameter holding the application's connection settings (JSON)")
    signoffs: list[str] = Field(default_factory=list)
    staging: str | None = Field(default=None, pattern=NAME_RE)
    pipelines: list[PipelineSpec] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    evidence: RdsEvidence = Field(default_factory=RdsEvidence)

    @model_validator(mode="after")
    def _one_source(self) -> RdsClusterSpec:
        if bool(self.db_instance_identifier) == bool(self.db_cluster_identifier):
            raise ValueError("name exactly one of db_instance_identifier and db_cluster_identifier")
        return self

    @property
    def source_identifier(self) -> str:
        return self.db_instance_identifier or self.db_cluster_identifier  # type: ignore[return-value]

    def credential_envs(self) -> list[tuple[str, Credentials]]:
        return [(f"pipelines.{i}.user", user) for i, p in enumerate(self.pipelines)
                if (user := getattr(p, "user", None)) is not None]

    def change_key(self) -> str:
        return change_key(self.change)


PROVIDERS = ("mysql", "rds")
PIPELINE_KINDS = ("binlog", "dms", "debezium")
AnyClusterSpec = Annotated[ClusterSpec | RdsClusterSpec, Field(discriminator="provider")]
_ANY_CLUSTER = TypeAdapter(AnyClusterSpec)


AnySpec = ClusterSpec | RdsClusterSpec


def cluster_spec(data: dict) -> ClusterSpec | RdsClusterSpec:
    """A stored cluster spec (a deployment's ``spec`` column) back as its provider's model."""
    return _ANY_CLUSTER.validate_python(data)


class Defaults(_Strict):
    thresholds: ThresholdOverrides = Field(default_factory=ThresholdOverrides)


class Fleet(_Strict):
    version: Literal[1] = 1
    name: str = Field(default="fleet", pattern=NAME_RE)
    defaults: Defaults = Field(default_factory=Defaults)
    tiers: dict[str, ThresholdOverrides] = Field(default_factory=dict)
    budget_per_hour: float | None = Field(default=None, gt=0, le=1_000_000,
                                          description="refuse a batch whose coexistence cost estimate is above")
    aws_cost: AwsCost = Field(default_factory=AwsCost)
    clusters: list[AnyClusterSpec] = Field(min_length=1)

    def cluster(self, name: str) -> ClusterSpec | RdsClusterSpec:
        for c in self.clusters:
            if c.name == name:
                return c
        raise BadInput(f"unknown cluster {name!r}; the fleet has: {', '.join(c.name for c in self.clusters)}")

    def select(self, only: list[str] | None) -> list[ClusterSpec | RdsClusterSpec]:
        if not only:
            return list(self.clusters)
        return [self.cluster(n) for n in only]


class FleetFileError(BadInput):
    """A fleet file problem, located: file, line, cluster, field."""

    def __init__(self, path: str, message: str, *, line: int | None = None,
                 cluster: str | None = None, field: str | None = None):
        self.path, self.line, self.cluster, self.field = path, line, cluster, field
        self.kind = ""
        self.others: list[FleetFileError] = []
        where = path + (f":{line}" if line else "")
        parts = [where]
        if cluster:
            parts.append(f"cluster {cluster!r}")
        if field:
            parts.append(f"field {field}")
        super().__init__(": ".join(parts) + ": " + message)


# --- loading -----------------------------------------------------------------------------


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Follow a pydantic error location through the YAML node tree (for line numbers)."""
    for key in loc:
        if node is None:
            return None
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    nxt = v
                    break
                # an unknown key's error points at the key itself
            if nxt is None:
                for k, _ in node.value:
                    if k.value == key:
                        return k
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _merge_thresholds(raw: dict, cluster: dict) -> dict:
    merged: dict = {}
    defaults = (raw.get("defaults") or {}).get("thresholds") or {}
    tier = cluster.get("tier", "default")
    tiers = raw.get("tiers") or {}
    for layer in (defaults, tiers.get(tier) or {}, cluster.get("thresholds") or {}):
        if isinstance(layer, dict):
            merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """A second `blue:` in one mapping is a mistake, not "the last one wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_fleet(text: str, path: str = "<fleet>") -> Fleet:
    """Parse and validate fleet YAML. Raises FleetFileError naming file, line, cluster and field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FleetFileError(path, f"not valid YAML: {getattr(e, 'problem', e)}",
                             line=(mark.line + 1) if mark else None) from None
    if not isinstance(raw, dict):
        raise FleetFileError(path, "the file must be a mapping with a 'clusters' list")
    for key in ("defaults", "tiers"):  # merged below: their shape is checked before anything reads them
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            node = _node_at(root, (key,))
            raise FleetFileError(path, f"{key} must be a mapping", line=node.start_mark.line + 1 if node else None,
                                 field=key)
    if isinstance(raw.get("defaults"), dict) and raw["defaults"].get("thresholds") is not None \
            and not isinstance(raw["defaults"]["thresholds"], dict):
        raise FleetFileError(path, "defaults.thresholds must be a mapping", field="defaults.thresholds")

    clusters = raw.get("clusters")
    if isinstance(clusters, list):
        seen: dict[str, int] = {}
        for i, c in enumerate(clusters):
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                if c["name"] in seen:
                    node = _node_at(root, ("clusters", i, "name"))
                    raise FleetFileError(path, f"duplicate cluster name (first at clusters[{seen[c['name']]}])",
                                         line=node.start_mark.line + 1 if node else None,
                                         cluster=c["name"], field="name")
                seen[c["name"]] = i
        # Validate the threshold layers in place first, so their errors point at where they are written.
        _validate_part(ThresholdOverrides, ((raw.get("defaults") or {}).get("thresholds") or {}),
                       path, root, ("defaults", "thresholds"))
        for tname, tval in (raw.get("tiers") or {}).items() if isinstance(raw.get("tiers"), dict) else []:
            _validate_part(ThresholdOverrides, tval or {}, path, root, ("tiers", tname))
        for i, c in enumerate(clusters):
            if isinstance(c, dict):
                tier = c.get("tier", "default")
                if not isinstance(tier, str) or not isinstance(c.get("thresholds") or {}, dict):
                    bad = "tier" if not isinstance(tier, str) else "thresholds"
                    node = _node_at(root, ("clusters", i, bad))
                    raise FleetFileError(path, f"{bad} must be a {'name' if bad == 'tier' else 'mapping'}",
                                         line=node.start_mark.line + 1 if node else None, cluster=c.get("name"),
                                         field=bad)
                if tier != "default" and tier not in (raw.get("tiers") or {}):
                    node = _node_at(root, ("clusters", i, "tier"))
                    raise FleetFileError(path, f"unknown tier {tier!r}", line=node.start_mark.line + 1 if node else None,
                                         cluster=c.get("name"), field="tier")
                if "thresholds" in c:
                    _validate_part(ThresholdOverrides, c["thresholds"] or {}, path, root,
                                   ("clusters", i, "thresholds"), cluster=c.get("name"))
        raw = dict(raw)
        raw["clusters"] = [
            {**c, "thresholds": _merge_thresholds(raw, c)} if isinstance(c, dict) else c for c in clusters
        ]
    try:
        fleet = Fleet.model_validate(raw)
    except ValidationError as e:
        raise _all_located(path, root, raw, [dict(x) for x in e.errors()]) from None
    _check_credential_scope(fleet, path, root)
    conflicts = fleet_conflicts(list(fleet.clusters))
    if conflicts:
        located = []
        for c in conflicts:
            node = _node_at(root, c.loc)
            located.append(FleetFileError(path, c.message, line=node.start_mark.line + 1 if node is not None else None,
                                          cluster=c.cluster, field=c.field))
        first = located[0]
        first.others = located[1:]
        if first.others:
            first.args = (str(first) + "".join(f"\n  also: {o}" for o in first.others[:9]),)
        raise first
    return fleet


def _check_credential_scope(fleet: Fleet, path: str, root: yaml.Node | None) -> None:
    """Every ``password_env`` must match the configured credential pattern (BGQ_* by default)."""
    for i, c in enumerate(fleet.clusters):
        for role, cred in c.credential_envs():
            problem = credential_scope_problem(cred.password_env)
            if problem is not None:
                field = f"{role}.password_env"
                node = _node_at(root, ("clusters", i, *(int(p) if p.isdigit() else p for p in field.split("."))))
                raise FleetFileError(path, problem, line=node.start_mark.line + 1 if node is not None else None,
                                     cluster=c.name, field=field)


def _validate_part(model: type[BaseModel], value: Any, path: str, root: yaml.Node | None,
                   loc: tuple, cluster: str | None = None) -> None:
    try:
        model.model_validate(value)
    except ValidationError as e:
        errors = [dict(err, loc=loc + tuple(err["loc"])) for err in e.errors()]
        raise _all_located(path, root, None, errors, cluster=cluster) from None


def _all_located(path: str, root: yaml.Node | None, raw: Any, errors: list[dict],
                 cluster: str | None = None) -> FleetFileError:
    """One error carrying every problem, most useful first: an unknown key (usually a typo)
    explains the "field required" that follows from it."""
    located = [_located(path, root, raw, err, cluster=cluster) for err in errors]
    located.sort(key=lambda e: (e.kind != "extra_forbidden", e.line or 0))
    first = located[0]
    if len(located) > 1:
        first.others = located[1:]
        first.args = (str(first) + "".join(f"\n  also: {o}" for o in located[1:10]),)
    return first


def _located(path: str, root: yaml.Node | None, raw: Any, err: dict, *,
             cluster: str | None = None) -> FleetFileError:
    loc = tuple(err["loc"])
    if len(loc) >= 3 and loc[0] == "clusters" and loc[2] in PROVIDERS:
        loc = loc[:2] + loc[3:]  # the union's discriminator is not a key of the file
    # A pipeline's kind is the union's discriminator too: the field keeps it, the file has no such key.
    node = _node_at(root, tuple(p for i, p in enumerate(loc)
                                if not (i >= 2 and loc[i - 2] == "pipelines" and p in PIPELINE_KINDS)))
    field_loc = loc
    if cluster is None and len(loc) >= 2 and loc[0] == "clusters" and isinstance(loc[1], int):
        field_loc = loc[2:]
        try:
            cluster = raw["clusters"][loc[1]].get("name") or f"clusters[{loc[1]}]"
        except (TypeError, KeyError, IndexError, AttributeError):
            cluster = f"clusters[{loc[1]}]"
    elif cluster is not None and len(loc) >= 2 and loc[0] == "clusters":
        field_loc = loc[2:]
    msg = err["msg"]
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    field = ".".join(str(p) for p in field_loc) or None
    e = FleetFileError(path, msg, line=node.start_mark.line + 1 if node is not None else None,
                       cluster=cluster, field=field)
    e.kind = err.get("type", "")
    return e


def load_fleet(path: str | os.PathLike) -> Fleet:
    """Read and validate a fleet file. Raises FleetFileError (a BadInput, exit code 2)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise FleetFileError(str(path), f"cannot read: {e.strerror}") from None
    return parse_fleet(text, str(path))


def check_credentials(fleet: Fleet, path: str, clusters: list[ClusterSpec] | list[AnySpec] | None = None) -> None:
    """Every credential variable the selected clusters name must be set in this environment."""
    for c in clusters or fleet.clusters:
        for role, cred in c.credential_envs():
            if cred.password_env not in os.environ:
                raise FleetFileError(path, f"environment variable {cred.password_env} is not set",
                                     cluster=c.name, field=f"{role}.password_env")
