"""The application's connection settings in SSM Parameter Store: updated at the switchover, restorable.

The parameter holds a JSON object. At the switchover bgqueue sets ``host`` and ``port`` (the new
writer endpoint), ``engine_version``, and ``bgqueue`` (deployment id, blue/green id, time); every
other key is kept as it is. The value may hold a secret, so bgqueue never logs, journals or
stores it: only the parameter's version numbers are recorded, and a restore re-reads the
previous version from SSM itself (``name:version``).
"""
from __future__ import annotations

import json

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.store.models import utcnow


def _read(region: str, name: str) -> dict:
    return aws.client("ssm", region).get_parameter(Name=name, WithDecryption=True)["Parameter"]


def _write(region: str, current: dict, name: str, value: str) -> int:
    ssm = aws.client("ssm", region)
    kwargs = {"Name": name, "Value": value, "Type": current.get("Type", "String"), "Overwrite": True}
    if kwargs["Type"] == "SecureString":  # keep its KMS key: without KeyId SSM would use the account default
        meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
        if meta and meta[0].get("KeyId"):
            kwargs["KeyId"] = meta[0]["KeyId"]
    return int(ssm.put_parameter(**kwargs)["Version"])


def update_at_switchover(spec, deployment_id: str, *, host: str | None, port: int | None,
                         engine_version: str | None, blue_green_id: str) -> dict:
    """Point the application's settings at the new writer. Idempotent: a parameter already carrying
    this deployment's mark is left alone. Returns ``{"parameter", "previous_version", "version"}``."""
    name = spec.app_config_parameter
    try:
        current = _read(spec.region, name)
        settings = json.loads(current["Value"])
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        mark = settings.get("bgqueue") or {}
        if isinstance(mark, dict) and mark.get("deployment") == deployment_id:
            version = int(current["Version"])  # written by this deployment before a crash
            return {"parameter": name, "previous_version": version - 1, "version": version, "resumed": True}
        if host:
            settings["host"] = host
        if port:
            settings["port"] = port
        if engine_version:
            settings["engine_version"] = engine_version
        settings["bgqueue"] = {"deployment": deployment_id, "blue_green": blue_green_id,
                               "switched_at": utcnow().isoformat(timespec="seconds")}
        version = _write(spec.region, current, name, json.dumps(settings, sort_keys=True))
    except aws.AWS_ERRORS as e:
        raise AwsError(f"SSM parameter {name}: {aws.explain(e)}") from None
    except ValueError as e:  # the value itself is never quoted
        raise AwsError(f"SSM parameter {name}: its value is not a JSON object ({type(e).__name__})") from None
    # SSM numbers versions one by one: ours is the next after the one we read.
    return {"parameter": name, "previous_version": version - 1, "version": version}


def restore(spec, record: dict) -> dict:
    """Put back the version before the switchover's, if the parameter still holds bgqueue's version
    (refused, AwsError, when someone changed it since). Returns ``{"parameter", "restored_from", "version"}``."""
    name = record["parameter"]
    try:
        current = _read(spec.region, name)
        if int(current["Version"]) != int(record["version"]):
            raise AwsError(f"SSM parameter {name} is at version {current['Version']}, not bgqueue's "
                           f"{record['version']}: changed since the switchover, not restored")
        previous = aws.client("ssm", spec.region).get_parameter(
            Name=f"{name}:{record['previous_version']}", WithDecryption=True)["Parameter"]
        version = _write(spec.region, current, name, previous["Value"])
    except aws.AWS_ERRORS as e:
        raise AwsError(f"SSM parameter {name}: {aws.explain(e)}") from None
    return {"parameter": name, "restored_from": record["previous_version"], "version": version}
