"""What a green environment costs while it coexists with blue, and the per-batch budget.

From creation to decommission a blue/green deployment runs a second copy of the source: green's
instances (its class is the change's ``instance_class`` or blue's), its storage (Aurora's green
is a clone: only changed pages are billed, not estimated) and, after the switchover, the old
``-oldN`` copy until retention ends. The estimate is green's hourly price from the table in
``config/prices.yaml`` (``BGQUEUE_RDS_PRICES`` names another file).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import yaml

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.source import Source, describe_spec, describe_specs, replicas_detail
from bgqueue.model.fleet import FleetFileError

PRICES_ENV = "BGQUEUE_RDS_PRICES"


def prices_path() -> Path:
    import config

    return Path(os.environ.get(PRICES_ENV) or Path(config.__file__).parent / "prices.yaml")


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


def prices() -> dict:
    return _load(str(prices_path()))


def _family(engine: str) -> str:
    return "aurora-mysql" if engine.startswith("aurora") else "mysql"


def estimate(spec, src: Source, replicas: list[dict] | None = None) -> dict:
    """Green's extra hourly cost for ``spec`` given its described source. Pure (no AWS call).

    Returns ``{"cluster", "currency", "green_per_hour", "instances": [...], "storage_per_hour",
    "unpriced": [...], "note"}``; ``unpriced`` lists what the price table lacks (not counted).
    """
    p = prices()
    hours = float(p.get("hours_per_month", 730))
    table = p.get("instance_hour", {}).get(_family(src.engine), {})
    unpriced: list[str] = []
    instances = []

    def instance(role: str, ident: str, cls: str | None, copies: int) -> None:
        price = table.get(cls or "")
        if price is None:
            unpriced.append(f"instance class {cls} ({_family(src.engine)})")
        instances.append({"role": role, "identifier": ident, "class": cls, "copies": copies,
                          "per_hour": None if price is None else round(price * copies, 4)})

    storage = 0.0
    change = spec.change
    if src.kind == "instance":
        copies = 2 if src.multi_az else 1
        instance("primary", src.identifier, change.instance_class or src.instance_class, copies)
        for r in replicas or []:
            instance("replica", r["DBInstanceIdentifier"], r.get("DBInstanceClass"), 2 if r.get("MultiAZ") else 1)
        stype = change.storage_type or src.storage_type or "gp2"
        gb = change.allocated_storage or src.allocated_storage or 0
        iops = change.iops or src.iops or 0
        mibps = change.storage_throughput or src.storage_throughput or 0
        per_gb = p.get("storage_gb_month", {}).get(stype)
        if per_gb is None:
            unpriced.append(f"storage type {stype}")
        else:
            monthly = gb * per_gb
            if stype in ("io1", "io2"):
                monthly += iops * p.get("iops_month", {}).get(stype, 0.0)
            elif stype == "gp3":
                monthly += max(0, iops - p.get("gp3_included_iops", 3000)) * p.get("iops_month", {}).get("gp3", 0.0)
                monthly += (max(0, mibps - p.get("gp3_included_mibps", 125))
                            * p.get("throughput_mibps_month", {}).get("gp3", 0.0))
            storage = monthly * copies * (1 + len(replicas or [])) / hours
        note = "green = a copy of the instance (and its replicas) with the change applied"
    else:
        for m in src.members:
            instance("writer" if m.writer else "reader", m.identifier, m.instance_class, 1)
        note = "Aurora green is a storage clone: only the pages it changes are billed (not estimated)"
    total = sum(i["per_hour"] or 0.0 for i in instances) + storage
    return {"cluster": spec.name, "currency": p.get("currency", "USD"), "green_per_hour": round(total, 4),
            "instances": instances, "storage_per_hour": round(storage, 4), "unpriced": unpriced, "note": note}


def estimate_for_spec(spec, src: Source | None = None) -> dict:
    """Describe ``spec``'s source (unless given) and its replicas, and estimate green's hourly cost.
    Raises AwsError (SourceMissing) when the source cannot be described."""
    src = src if src is not None else describe_spec(spec)
    local = [r for r in src.replicas if not r.startswith("arn:")]
    replicas = replicas_detail(src.region, local) if src.kind == "instance" and local else []
    return estimate(spec, src, replicas)


def estimate_batch(estimates: list[dict]) -> dict:
    """The batch's figure: the sum of its clusters' green hourly costs."""
    return {"currency": estimates[0]["currency"] if estimates else "USD",
            "green_per_hour": round(sum(e["green_per_hour"] for e in estimates), 4),
            "clusters": len(estimates), "unpriced": sorted({u for e in estimates for u in e["unpriced"]})}


def _line_of(path: str, key: str) -> int | None:
    try:
        for i, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.lstrip().startswith(f"{key}:"):
                return i
    except OSError:
        pass
    return None


def check_budget(fleet, specs, fleet_path: str) -> dict | None:
    """Refuse (FleetFileError, exit 2, nothing created) a batch whose green environments would cost
    more per hour than the fleet's ``budget_per_hour``. Without a budget: no AWS call, None.
    Returns the batch estimate otherwise."""
    budget = fleet.budget_per_hour
    rds = [s for s in specs if s.provider == "rds"]
    if budget is None or not rds:
        return None

    described = describe_specs(rds)

    def one(spec):
        try:
            src = described[spec.name]
            if isinstance(src, aws.AwsError):
                raise src
            return estimate_for_spec(spec, src)
        except aws.AwsError as e:
            field = "db_instance_identifier" if spec.db_instance_identifier else "db_cluster_identifier"
            return FleetFileError(fleet_path, f"cannot estimate its cost: {e}", cluster=spec.name, field=field)

    with ThreadPoolExecutor(max_workers=min(16, len(rds))) as pool:
        results = list(pool.map(one, rds))
    for r in results:
        if isinstance(r, FleetFileError):
            raise r
    line = _line_of(fleet_path, "budget_per_hour")
    for e in results:
        if e["unpriced"]:
            raise FleetFileError(fleet_path, f"cannot check budget_per_hour: no price for {', '.join(e['unpriced'])} "
                                             f"in {prices_path()}", line=line, cluster=e["cluster"], field="budget_per_hour")
    batch = estimate_batch(results)
    if batch["green_per_hour"] > budget:
        top = sorted(results, key=lambda e: e["green_per_hour"], reverse=True)[:3]
        raise FleetFileError(
            fleet_path, f"the batch's green environments would cost about {batch['green_per_hour']:.2f} "
                        f"{batch['currency']}/h while they coexist with blue ({len(results)} clusters; largest: "
                        + ", ".join(f"{e['cluster']} {e['green_per_hour']:.2f}" for e in top)
                        + f"), above budget_per_hour {budget:g}; nothing was enqueued",
            line=line, field="budget_per_hour")
    return batch
