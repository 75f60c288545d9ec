"""Check results, decisions and sign-offs in the store (the audit trail of every go/no-go)."""
from __future__ import annotations

from sqlalchemy import func, select

from bgqueue.adapters.store.db import Store, detached
from bgqueue.adapters.store.models import CheckResultRow, DecisionRow, Signoff, utcnow
from bgqueue.model.results import CheckResult


def next_round(store: Store, deployment_id: str, kind: str = "pre_switch") -> int:
    with store.session() as s:
        n = s.execute(select(func.max(DecisionRow.round)).where(DecisionRow.deployment_id == deployment_id,
                                                                 DecisionRow.kind == kind)).scalar()
        return (n or 0) + 1


def record_round(store: Store, deployment_id: str, round_: int, results: list[CheckResult], verdict: str,
                 reasons: list[str], kind: str = "pre_switch") -> None:
    """One validation round: every check's result and the decision, in one transaction."""
    now = utcnow()
    with store.session() as s:
        for r in results:
            s.add(CheckResultRow(deployment_id=deployment_id, round=round_, name=r.name, status=r.status,
                                 retryable=bool(r.retryable), value=None if r.value is None else str(r.value),
                                 threshold=None if r.threshold is None else str(r.threshold), reason=r.reason,
                                 evidence=r.evidence or None, duration_ms=r.duration_ms, at=now))
        s.add(DecisionRow(deployment_id=deployment_id, kind=kind, round=round_, verdict=verdict, reasons=reasons,
                          at=now))


def decisions(store: Store, deployment_id: str, kind: str | None = None) -> list[DecisionRow]:
    with store.session() as s:
        q = select(DecisionRow).where(DecisionRow.deployment_id == deployment_id)
        if kind:
            q = q.where(DecisionRow.kind == kind)
        return detached(s, q.order_by(DecisionRow.id))


def check_results(store: Store, deployment_id: str, round_: int | None = None,
                  kind_rounds: list[int] | None = None) -> list[CheckResultRow]:
    """Results of one round (default: the latest round that has results)."""
    with store.session() as s:
        if round_ is None:
            round_ = s.execute(select(func.max(CheckResultRow.round))
                               .where(CheckResultRow.deployment_id == deployment_id)).scalar()
            if round_ is None:
                return []
        rows = list(s.execute(select(CheckResultRow).where(CheckResultRow.deployment_id == deployment_id,
                                                           CheckResultRow.round == round_)
                              .order_by(CheckResultRow.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def add_signoff(store: Store, cluster: str, change_key: str, team: str, signed_by: str, note: str | None = None) -> None:
    with store.session() as s:
        s.add(Signoff(cluster=cluster, change_key=change_key, team=team, signed_by=signed_by, note=note))


def signoffs(store: Store, cluster: str, change_key: str) -> list[Signoff]:
    with store.session() as s:
        return detached(s, select(Signoff).where(Signoff.cluster == cluster, Signoff.change_key == change_key)
                              .order_by(Signoff.id))


def waiting(store: Store, deployment_ids: list[str]) -> dict[str, str]:
    """Per deployment, what its latest validation round waits for (each check that waits or failed
    retryably: "check waits: reason (value)"), in
    one query for all of them: what a progress display shows beside VALIDATING."""
    if not deployment_ids:
        return {}
    latest = (select(CheckResultRow.deployment_id, func.max(CheckResultRow.round).label("round"))
              .where(CheckResultRow.deployment_id.in_(deployment_ids))
              .group_by(CheckResultRow.deployment_id).subquery())
    with store.session() as s:
        store_rows = s.execute(
            select(CheckResultRow.deployment_id, CheckResultRow.name, CheckResultRow.reason, CheckResultRow.value)
            .join(latest, (CheckResultRow.deployment_id == latest.c.deployment_id)
                  & (CheckResultRow.round == latest.c.round))
            .where((CheckResultRow.status == "wait")
                   | (CheckResultRow.status.in_(("fail", "error")) & CheckResultRow.retryable))
            .order_by(CheckResultRow.id)).all()
    out: dict[str, list[str]] = {}
    for dep_id, name, reason, value in store_rows:
        out.setdefault(dep_id, []).append(f"{name} waits: {reason or ''}" + (f" ({value})" if value else ""))
    return {d: "; ".join(texts) for d, texts in out.items()}
