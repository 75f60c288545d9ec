"""Helpers of the rds provider's tests: moto clients, sources in moto, fleet files, a lag feeder."""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT = "123456789012"
FAST = {"max_lag_s": 1.0, "sync_timeout_s": 30, "sync_poll_s": 0.2, "catchup_timeout_s": 1, "lag_window_s": 1,
        "validation_timeout_s": 20, "validation_poll_s": 0.3, "monitor_window_s": 0.5, "monitor_tick_s": 0.25,
        "monitor_eval_s": 1}
_names = itertools.count(1)


def unique(base: str) -> str:
    """Identifiers unique across the session (moto and Redis outlive a test)."""
    return f"{base}{next(_names):03d}"


def moto_client(service: str, url: str):
    """A client of the test itself (not bgqueue's), straight to moto, retries off."""
    return boto3.client(service, region_name=REGION, endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 0}))


def parameter_group(rds, name: str, family: str = "mysql8.0", cluster: bool = False, **values) -> str:
    if cluster:
        rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=name, DBParameterGroupFamily=family,
                                              Description="bgqueue test")
        if values:
            rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[
                {"ParameterName": k, "ParameterValue": str(v), "ApplyMethod": "immediate"} for k, v in values.items()])
        return name
    rds.create_db_parameter_group(DBParameterGroupName=name, DBParameterGroupFamily=family, Description="bgqueue test")
    if values:
        rds.modify_db_parameter_group(DBParameterGroupName=name, Parameters=[
            {"ParameterName": k, "ParameterValue": str(v), "ApplyMethod": "immediate"} for k, v in values.items()])
    return name


def instance(rds, name: str, *, pg: str, cls: str = "db.r6g.large", version: str = "8.0.35", **kw) -> dict:
    return rds.create_db_instance(DBInstanceIdentifier=name, Engine="mysql", EngineVersion=version,
                                  DBInstanceClass=cls, AllocatedStorage=kw.pop("storage", 100),
                                  MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                                  DBParameterGroupName=pg, **kw)["DBInstance"]


def aurora(rds, name: str, *, cpg: str, pg: str, members: int = 2, cls: str = "db.r6g.large") -> dict:
    c = rds.create_db_cluster(DBClusterIdentifier=name, Engine="aurora-mysql", EngineVersion="8.0.mysql_aurora.3.05.2",
                              MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                              DBClusterParameterGroupName=cpg)["DBCluster"]
    for i in range(members):
        rds.create_db_instance(DBInstanceIdentifier=f"{name}-{i + 1}", DBClusterIdentifier=name, Engine="aurora-mysql",
                               DBInstanceClass=cls, DBParameterGroupName=pg)
    return c


def write_fleet(path: Path, clusters: list[dict], budget: float | None = None, aws_cost: dict | None = None,
                **thresholds) -> Path:
    """A fleet file. Cost Explorer is off unless ``aws_cost`` says otherwise: moto serves queued
    GetCostAndUsage results to whichever new request comes first, so only the tests that queue one read it."""
    doc: dict = {"version": 1, "name": "rds-test", "defaults": {"thresholds": {**FAST, **thresholds}},
                 "aws_cost": aws_cost or {"explorer": False}, "clusters": clusters}
    if budget is not None:
        doc["budget_per_hour"] = budget
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cluster_entry(name: str, *, instance: str | None = None, cluster: str | None = None, **extra) -> dict:
    entry = {"name": name, "provider": "rds", "region": REGION}
    entry["db_instance_identifier" if instance else "db_cluster_identifier"] = instance or cluster
    return {**entry, **extra}


def blue_green_of(rds, source_name: str) -> list[dict]:
    """Every blue/green deployment whose source or target is named ``source_name`` (any status)."""
    out = []
    for bg in rds.describe_blue_green_deployments()["BlueGreenDeployments"]:
        if any(arn.split(":")[-1] in (source_name, f"{source_name}-old1") for arn in (bg["Source"], bg["Target"])):
            out.append(bg)
    return out


class LagFeeder:
    """Publishes, as RDS would once a minute (moto never produces metrics by itself), ReplicaLag
    (AuroraBinlogReplicaLag for clusters) = 0 for every green writer in moto, and healthy evidence
    metrics (``bench.fleet.HEALTHY``) for both sides of every blue/green deployment; a switched
    deployment's new primary gets ``after_switch`` on top."""

    def __init__(self, url: str, every_s: float = 0.2, *, evidence: bool = True, after_switch: dict | None = None):
        self.url, self.every_s, self.evidence, self.after_switch = url, every_s, evidence, after_switch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def feed_once(self) -> int:
        from bench.fleet import feed_replica_lag

        return feed_replica_lag(self.url, REGION, evidence=self.evidence, after_switch=self.after_switch)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.feed_once()
            except Exception:  # moto busy or a deployment mid-delete: the next round feeds again
                continue


def new_deployment(runtime, entry: dict, **thresholds) -> str:
    """A PENDING deployment of one rds cluster entry in a batch of its own (no Celery involved)."""
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.model.fleet import cluster_spec

    spec = cluster_spec({**entry, "thresholds": {**FAST, **thresholds}})
    _, ids = deps.create_batch(runtime.store, fleet_name="rds-test", fleet_path="-", fleet_text="",
                               clusters=[spec.model_dump(mode="json")])
    return ids[spec.name]


def move(runtime, deployment_id: str, *path, **fields):
    """Walk a deployment along ``path`` (fenced transitions, as the steps do); ``fields`` go with the last."""
    from bgqueue.adapters.store import deployments as deps

    dep = deps.get_deployment(runtime.store, deployment_id)
    claim = deps.claim(runtime.store, deployment_id, "test", [dep.phase])
    for i, phase in enumerate(path):
        claim = deps.transition(runtime.store, claim, phase, **(fields if i == len(path) - 1 else {}))
    return claim


def queue_cost_results(url: str, *results: dict) -> None:
    """Queue GetCostAndUsage answers in moto (its own API: moto tracks no cost)."""
    import json
    import urllib.request

    req = urllib.request.Request(f"{url}/moto-api/static/ce/cost-and-usage-results", method="POST",
                                 data=json.dumps({"results": list(results)}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).close()


def cost_result(amounts: dict[str, float], day: str = "2026-12-01") -> dict:
    """A GetCostAndUsage answer grouped by bgqueue:deployment (``{deployment id: USD}``)."""
    return {"ResultsByTime": [{"TimePeriod": {"Start": day, "End": day}, "Total": {}, "Estimated": True, "Groups": [
        {"Keys": [f"bgqueue:deployment${k}"], "Metrics": {"UnblendedCost": {"Amount": str(v), "Unit": "USD"}}}
        for k, v in amounts.items()]}]}
