"""Parameter groups of blue and green, compared: what a human set in them (Source=user).

An Aurora cluster's values are its cluster parameter group's with its writer's DB parameter group
on top (an instance-level value wins, as in Aurora). Default groups (``default.*``) cannot be
modified, so they hold no user value and are not read. The comparison itself is the mysql
provider's drift rule (``bgqueue.checks.drift.diff``): behaviour-changing differences must be
declared in ``change.parameters``, and declared values must be what green has. A value set on one
side only is compared with ``(engine default)`` on the other.
"""
from __future__ import annotations

from bgqueue.adapters.aws import clients as aws
from bgqueue.checks.drift import diff

ENGINE_DEFAULT = "(engine default)"


def _group(region: str, name: str | None, cluster: bool) -> dict[str, str]:
    if not name or name.startswith("default."):
        return {}
    rds = aws.client("rds", region)
    op, arg = (("describe_db_cluster_parameters", "DBClusterParameterGroupName") if cluster
               else ("describe_db_parameters", "DBParameterGroupName"))
    out: dict[str, str] = {}
    for page in rds.get_paginator(op).paginate(**{arg: name, "Source": "user"}):
        for p in page.get("Parameters", []):
            if p.get("Source", "user") == "user" and "ParameterValue" in p:
                out[p["ParameterName"].lower()] = str(p["ParameterValue"])
    return out


def values(region: str, parameter_group: str | None, cluster_parameter_group: str | None) -> dict[str, str]:
    """The user-set parameter values of one environment (cluster group, then instance group on top)."""
    return {**_group(region, cluster_parameter_group, cluster=True), **_group(region, parameter_group, cluster=False)}


def compare(region: str, blue: dict, green: dict, change) -> dict[str, list]:
    """``drift.diff`` of blue's and green's user-set values, ``blue``/``green`` being their facts."""
    b = values(region, blue.get("parameter_group"), blue.get("cluster_parameter_group"))
    g = values(region, green.get("parameter_group"), green.get("cluster_parameter_group"))
    # Set on one side only means "a value vs the engine's default": a difference like any other.
    for name in set(b) | set(g):
        b.setdefault(name, ENGINE_DEFAULT)
        g.setdefault(name, ENGINE_DEFAULT)
    report = diff(b, g, dict(change.parameters), engine_change=change.engine_version is not None)
    report["groups"] = [{"blue": [blue.get("cluster_parameter_group"), blue.get("parameter_group")],
                         "green": [green.get("cluster_parameter_group"), green.get("parameter_group")]}]
    return report
