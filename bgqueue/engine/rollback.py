"""Rollback, whatever the provider: the provider says whether it is possible now and runs it.

``preconditions`` observes and changes nothing (empty: a rollback may go); ``roll_back`` runs or
resumes one (the mysql provider's is the switchover procedure in the other direction).
"""
from __future__ import annotations

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment
from bgqueue.engine.providers import provider_for
from bgqueue.model.outcomes import Next


def preconditions(rt: Runtime, dep: Deployment) -> list[str]:
    """Why a rollback of ``dep`` would be refused now (empty: it may go)."""
    return provider_for(dep).rollback_preconditions(rt, dep)


def roll_back(rt: Runtime, deployment_id: str, reason: str = "manual rollback") -> Next:
    """Run (or resume) the rollback of one deployment; records ROLLED_BACK, or FAILED with why."""
    return provider_for(deps.get_deployment(rt.store, deployment_id)).roll_back(rt, deployment_id, reason)
