"""One interface per kind of database fleet, and the registry: the only place that names providers.

A provider is what the fleet file's ``provider:`` value selects (``mysql``: servers bgqueue reaches
by SQL; ``rds``: Amazon RDS Blue/Green Deployments). The engine asks ``provider_for(...)`` and
calls the protocol; no other module tests a provider's name. A new provider is one module that
defines a ``Provider`` and one line in ``_REGISTRY``.
"""
from __future__ import annotations

from typing import Any, Protocol

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.engine.mysql.provider import MYSQL
from bgqueue.engine.rds.provider import RDS
from bgqueue.model.errors import BadInput
from bgqueue.model.outcomes import ClusterCheck, MonitorFigures, Next


class Provider(Protocol):
    name: str
    creates_environments: bool  # green is built (and billed) by the provider

    # --- the per-cluster chain (each step claims, acts, records; never waits) ---
    def prepare(self, rt: Runtime, deployment_id: str) -> Next: ...
    def wait_for_sync(self, rt: Runtime, deployment_id: str) -> Next: ...
    def check_names(self, spec: Any) -> list[str]: ...
    def switch(self, rt: Runtime, deployment_id: str) -> Next: ...
    def procedure_poll_s(self, spec: Any) -> float: ...  # quiet time between two polls of a switchover
    def on_no_go(self, rt: Runtime, dep: Any) -> None: ...

    # --- after the switchover ---
    def monitor_baseline(self, metrics: Any, spec: Any, started: float) -> dict: ...
    def monitor_figures(self, rt: Runtime, metrics: Any, spec: Any, *, since: float, now: float,
                        unhealthy_pipelines: tuple[str, ...]) -> MonitorFigures: ...
    def window_end_findings(self, spec: Any, figures: dict) -> tuple[dict, list[str]]: ...
    def rollback_preconditions(self, rt: Runtime, dep: Any) -> list[str]: ...
    def roll_back(self, rt: Runtime, deployment_id: str, reason: str) -> Next: ...
    def decommission(self, rt: Runtime, dep: Any, *, force: bool) -> tuple[str, dict]: ...

    # --- before anything is enqueued, and at night ---
    def preflight(self, specs: list) -> list[ClusterCheck]: ...
    def check_budget(self, fleet: Any, specs: list, fleet_path: str) -> dict | None: ...
    def nightly_checks(self, spec: Any) -> tuple: ...

    # --- what a batch costs (warnings, never errors) ---
    def batch_started(self, rt: Runtime, fleet: Any, batch_id: str, deployment_ids: list[str]) -> list[str]: ...
    def batch_ended(self, rt: Runtime, batch_id: str, rows: list) -> dict: ...
    def real_costs(self, rows: list) -> tuple[dict[str, float], list[str]]: ...


_REGISTRY: dict[str, Provider] = {MYSQL.name: MYSQL, RDS.name: RDS}


def provider_named(name: str) -> Provider:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInput(f"unknown provider {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def provider_for(spec_or_dep: Any) -> Provider:
    """The provider of a cluster spec or a deployment row."""
    return provider_named(spec_or_dep.provider)


def provider_of(rt: Runtime, deployment_id: str) -> Provider:
    return provider_named(deps.identity(rt.store, deployment_id).provider)


def names() -> list[str]:
    return list(_REGISTRY)
