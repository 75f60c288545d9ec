"""Flip and check the application paths of a cluster other than bgqueue's registry.

Each target is flipped to one side ("blue" or "green") idempotently: a target that already points
there is left as it is. ``readiness`` lists what would stop a switchover through that path
(empty: ready). I/O only: HAProxy's runtime API, Route 53 and SSM through boto3.
"""
from __future__ import annotations

import json
import time
from typing import Any

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.routing.haproxy import HAProxyError, HAProxyRuntime
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.routing import HAProxyTarget, RegistryTarget, Route53Target, RoutingTarget, SsmTarget


class TargetError(BgqueueError):
    """A routing target could not be read or changed (the message names the target)."""


def flip(spec: ClusterSpec, target: RoutingTarget, side: str) -> dict[str, Any]:
    """Point ``target`` at ``side`` ("blue" or "green"). Returns what was observed/changed."""
    try:
        if isinstance(target, HAProxyTarget):
            to, frm = ((target.green_server, target.blue_server) if side == "green"
                       else (target.blue_server, target.green_server))
            r = HAProxyRuntime(target.admin).flip_writer(target.backend, to, frm, force=True)
            return {"to": to, "changed": bool(getattr(r, "changed", True))}
        if isinstance(target, Route53Target):
            value = target.green_value if side == "green" else target.blue_value
            r53 = aws.client("route53", target.region)
            change = r53.change_resource_record_sets(HostedZoneId=target.zone_id, ChangeBatch={
                "Comment": f"bgqueue: {spec.name} writer to {side}",
                "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                    "Name": target.record, "Type": target.type, "TTL": target.ttl_s,
                    "ResourceRecords": [{"Value": value}]}}]})["ChangeInfo"]
            status = _wait_insync(r53, target, change)
            return {"value": value, "change": change["Id"], "status": status}
        if isinstance(target, SsmTarget):
            endpoint = spec.green if side == "green" else spec.blue
            ssm = aws.client("ssm", target.region)
            current = ssm.get_parameter(Name=target.parameter, WithDecryption=True)["Parameter"]
            settings = _settings(target, current["Value"])
            if (settings.get("host"), settings.get("port")) == (endpoint.host, endpoint.port):
                return {"version": int(current["Version"]), "changed": False}
            settings.update(host=endpoint.host, port=endpoint.port)
            kwargs = {"Name": target.parameter, "Value": json.dumps(settings, sort_keys=True),
                      "Type": current.get("Type", "String"), "Overwrite": True}
            return {"version": int(ssm.put_parameter(**kwargs)["Version"]), "changed": True}
    except HAProxyError as e:
        raise TargetError(f"{target.label}: {e}") from None
    except aws.AWS_ERRORS as e:
        raise TargetError(f"{target.label}: {aws.explain(e)}") from None
    raise TargetError(f"{target.label}: flipped by the switchover itself")  # the registry


def readiness(spec: ClusterSpec, target: RoutingTarget) -> list[str]:
    """What would stop a switchover through this path (an unreachable target is a problem too)."""
    try:
        if isinstance(target, RegistryTarget):
            return []
        if isinstance(target, HAProxyTarget):
            return [f"{target.label}: {p}" for p in HAProxyRuntime(target.admin).readiness(
                target.backend, target.blue_server, target.green_server)]
        if isinstance(target, Route53Target):
            return _route53_readiness(target)
        if isinstance(target, SsmTarget):
            current = aws.client("ssm", target.region).get_parameter(Name=target.parameter,
                                                                     WithDecryption=True)["Parameter"]
            _settings(target, current["Value"])
            return []
    except (HAProxyError, TargetError) as e:
        return [str(e) if str(e).startswith(target.label) else f"{target.label}: {e}"]
    except aws.AWS_ERRORS as e:
        return [f"{target.label}: {aws.explain(e)}"]
    return []


def probe(target: RoutingTarget) -> list[str]:
    """Does the target exist as the fleet file names it? (Reachable socket, known backend and
    servers, an existing hosted zone or parameter.) Health is ``readiness``'s business."""
    try:
        if isinstance(target, HAProxyTarget):
            names = HAProxyRuntime(target.admin).servers(target.backend)
            return [f"{target.label}: no server {s!r} in backend {target.backend!r}"
                    for s in (target.blue_server, target.green_server) if s not in names]
        if isinstance(target, Route53Target):
            aws.client("route53", target.region).get_hosted_zone(Id=target.zone_id)
        elif isinstance(target, SsmTarget):
            aws.client("ssm", target.region).get_parameter(Name=target.parameter)
    except HAProxyError as e:
        return [f"{target.label}: {e}"]
    except aws.AWS_ERRORS as e:
        return [f"{target.label}: {aws.explain(e)}"]
    return []


def _route53_readiness(target: Route53Target) -> list[str]:
    r53 = aws.client("route53", target.region)
    found = r53.list_resource_record_sets(HostedZoneId=target.zone_id, StartRecordName=target.record,
                                          StartRecordType=target.type, MaxItems="1")["ResourceRecordSets"]
    name = target.record if target.record.endswith(".") else target.record + "."
    record = next((r for r in found if r["Name"] == name and r["Type"] == target.type), None)
    if record is None:
        return [f"{target.label}: no {target.type} record {target.record} in zone {target.zone_id}"]
    ttl = int(record.get("TTL", 0))
    if ttl > target.max_ttl_s:
        return [f"{target.label}: TTL {ttl}s is above {target.max_ttl_s}s (clients would keep the old writer "
                f"for up to {ttl}s after the flip)"]
    return []


def _wait_insync(r53, target: Route53Target, change: dict) -> str:
    """Wait (bounded) until Route 53 has the change on all its name servers: only then do resolvers
    that ask get the new writer (after at most the record's TTL)."""
    status, delay = change["Status"], 0.1
    deadline = time.monotonic() + target.insync_timeout_s
    while status != "INSYNC":
        if time.monotonic() >= deadline:
            raise TargetError(f"{target.label}: change {change['Id']} still {status} after "
                              f"{target.insync_timeout_s:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        status = r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"]
    return status


def _settings(target: SsmTarget, value: str) -> dict:
    try:
        settings = json.loads(value)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise TargetError(f"{target.label}: the parameter does not hold a JSON object of connection settings")
    return settings
