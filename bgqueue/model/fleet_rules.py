"""Rules across the clusters of one fleet file, checked at load time after each cluster is valid.

Each cluster can be valid on its own and the file still be wrong: two clusters naming one
server would each take their own lock and switch it twice at once; a cluster that is its own
staging twin (or two twins that wait for each other) can never pass the gate; two pipelines
writing one stream interleave their events. Problems come back located (the path of the field
in the file, the cluster) so the loader can name the file, line, cluster and field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Conflict:
    loc: tuple[Any, ...]  # path of the offending field in the file: ("clusters", i, "green", ...)
    cluster: str
    field: str
    message: str


def fleet_conflicts(clusters: list[Any]) -> list[Conflict]:
    """Every cross-cluster problem of the (individually valid) clusters, in file order."""
    return [*_endpoints(clusters), *_rds_sources(clusters), *_staging(clusters), *_streams(clusters)]


def _endpoints(clusters: list[Any]) -> list[Conflict]:
    out: list[Conflict] = []
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for i, c in enumerate(clusters):
        if c.provider != "mysql":
            continue
        if c.blue.key() == c.green.key():
            out.append(Conflict(("clusters", i, "green"), c.name, "green",
                                f"blue and green are the same endpoint ({c.green})"))
            continue
        for side in ("blue", "green"):
            endpoint = getattr(c, side)
            first = seen.get(endpoint.key())
            if first is not None:
                out.append(Conflict(("clusters", i, side), c.name, side,
                                    f"{endpoint} is already cluster {first[0]!r}'s {first[1]}: two clusters on one "
                                    "server would each take their own lock and switch it twice"))
            else:
                seen[endpoint.key()] = (c.name, side)
    return out


def _rds_sources(clusters: list[Any]) -> list[Conflict]:
    out: list[Conflict] = []
    seen: dict[tuple[str, str], str] = {}
    for i, c in enumerate(clusters):
        if c.provider != "rds":
            continue
        field = "db_instance_identifier" if c.db_instance_identifier else "db_cluster_identifier"
        key = (c.region, c.source_identifier.lower())  # RDS identifiers are case-insensitive
        if key in seen:
            out.append(Conflict(("clusters", i, field), c.name, field,
                                f"{c.source_identifier} in {c.region} is already cluster {seen[key]!r}'s source"))
        else:
            seen[key] = c.name
    return out


def _staging(clusters: list[Any]) -> list[Conflict]:
    out: list[Conflict] = []
    twin = {c.name: c.staging for c in clusters}
    for i, c in enumerate(clusters):
        if c.staging is None:
            continue
        if c.staging == c.name:
            out.append(Conflict(("clusters", i, "staging"), c.name, "staging",
                                "a cluster cannot be its own staging twin (the gate would wait for itself)"))
            continue
        # Follow the twins named in this file: a cycle means none of them can ever go first.
        path, at = [c.name], c.staging
        while at in twin and at not in path:
            path.append(at)
            at = twin[at]
        if at == c.name:
            out.append(Conflict(("clusters", i, "staging"), c.name, "staging",
                                f"staging twins form a cycle ({' → '.join([*path, at])}): none of them can go first"))
    return out


def _streams(clusters: list[Any]) -> list[Conflict]:
    out: list[Conflict] = []
    seen: dict[str, str] = {}
    for i, c in enumerate(clusters):
        for j, p in enumerate(c.pipelines):
            if p.kind != "binlog":
                continue
            key = p.stream_key(c.name)
            if key in seen:
                out.append(Conflict(("clusters", i, "pipelines", j, "stream"), c.name, f"pipelines.{j}.stream",
                                    f"stream {key} is already written by {seen[key]}"))
            else:
                seen[key] = f"pipeline {p.name!r} of cluster {c.name!r}"
    return out
