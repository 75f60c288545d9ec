"""The human gates: team sign-offs on this very change, and a staging twin that went first."""
from __future__ import annotations

from sqlalchemy import select

from bgqueue.adapters.store import validation
from bgqueue.adapters.store.models import Deployment
from bgqueue.checks.context import CheckContext
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.phases import TERMINAL, Phase
from bgqueue.model.results import CheckResult, failed, passed


def signoffs(ctx: CheckContext) -> CheckResult:
    """Every team named on the cluster signed off this change (a sign-off of another change does not count)."""
    teams = ctx.spec.signoffs
    if not teams:
        return passed("signoffs", "no sign-offs required")
    key = ctx.spec.change_key()
    got = {s.team: s for s in validation.signoffs(ctx.store, ctx.spec.name, key)}
    missing = [t for t in teams if t not in got]
    evidence = {"change_key": key, "signed": {t: {"by": s.signed_by, "at": s.at.isoformat()} for t, s in got.items()},
                "missing": missing}
    if missing:
        # A team may still sign: WAIT until the validation deadline, then NO_GO.
        return failed("signoffs", f"missing sign-off from {', '.join(missing)} for change {key} "
                      f"(bgqueue signoff {ctx.spec.name} --team T --by NAME)", retryable=True,
                      value=len(teams) - len(missing), threshold=len(teams), evidence=evidence)
    return passed("signoffs", "signed by " + ", ".join(f"{t} ({got[t].signed_by})" for t in teams),
                  value=len(teams), threshold=len(teams), evidence=evidence)


def staging_gate(ctx: CheckContext) -> CheckResult:
    """A production cluster with a staging twin goes only after the twin's latest deployment of
    the same change COMPLETED. There is no override."""
    twin = ctx.spec.staging
    if not twin:
        return passed("staging", "no staging twin named")
    key = ctx.spec.change_key()
    with ctx.store.session() as s:
        rows = list(s.execute(select(Deployment).where(Deployment.cluster == twin)
                              .order_by(Deployment.created_at.desc())).scalars())
        same = [d for d in rows if cluster_spec(d.spec).change_key() == key]
        latest = same[0] if same else None
        info = None if latest is None else {"deployment": latest.id, "phase": latest.phase, "reason": latest.reason}
    evidence = {"twin": twin, "change_key": key, "twin_latest": info}
    if latest is None:
        return failed("staging", f"staging twin {twin!r} has no deployment of this change ({key})", evidence=evidence)
    if latest.phase == Phase.COMPLETED:
        return passed("staging", f"staging twin {twin!r} completed this change (deployment {latest.id})",
                      evidence=evidence)
    if Phase(latest.phase) not in TERMINAL:
        return failed("staging", f"staging twin {twin!r} is still {latest.phase} with this change", retryable=True,
                      evidence=evidence)
    return failed("staging", f"staging twin {twin!r}'s latest deployment of this change ended {latest.phase}"
                  + (f": {latest.reason}" if latest.reason else ""), evidence=evidence)
