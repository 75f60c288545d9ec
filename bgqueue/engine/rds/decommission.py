"""After the retention period: delete the old ``-oldN`` source (a final snapshot first) and the
blue/green deployment object. ``bgqueue.engine.retention.decommission`` calls this only for a COMPLETED
deployment whose retention ended (or with --force --yes); it never runs earlier.
"""
from __future__ import annotations

import re

from bgqueue.adapters.aws import bluegreen
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.aws.source import SourceMissing, describe
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store.models import utcnow
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import RdsClusterSpec


def snapshot_name(identifier: str, when) -> str:
    """A valid final-snapshot identifier (letter first, letters/digits/single hyphens, ≤ 255)."""
    return re.sub(r"-{2,}", "-", f"bgq-final-{identifier}-{when:%Y%m%d%H%M%S}")[:255].rstrip("-")


def _delete_old(region: str, kind: str, ident: str, snapshot: str) -> tuple[str, str | None]:
    """Delete the old source (members first for a cluster). Returns what happened and the final snapshot."""
    rds = aws.client("rds", region)
    try:
        old = describe(region, kind, ident)
    except SourceMissing:
        return f"old {kind} {ident} already gone", None
    if old.deletion_protection:  # copied from blue by RDS; retention is over, so lift it (journaled)
        if kind == "instance":
            rds.modify_db_instance(DBInstanceIdentifier=ident, DeletionProtection=False, ApplyImmediately=True)
        else:
            rds.modify_db_cluster(DBClusterIdentifier=ident, DeletionProtection=False, ApplyImmediately=True)
    if kind == "instance":
        rds.delete_db_instance(DBInstanceIdentifier=ident, SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=snapshot)
        return f"old instance {ident} deleted (final snapshot {snapshot})", snapshot
    for m in old.members:  # cluster members take no snapshot of their own: the cluster's covers them
        rds.delete_db_instance(DBInstanceIdentifier=m.identifier, SkipFinalSnapshot=True)
    rds.delete_db_cluster(DBClusterIdentifier=ident, SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=snapshot)
    return f"old cluster {ident} and its {len(old.members)} instance(s) deleted (final snapshot {snapshot})", snapshot


def _delete_old_replicas(region: str, identifiers: list[str]) -> list[str]:
    """Delete the old environment's read replicas (copies of the old primary: no final snapshot)."""
    rds = aws.client("rds", region)
    gone = []
    for ident in identifiers:
        try:
            rds.delete_db_instance(DBInstanceIdentifier=ident, SkipFinalSnapshot=True)
            gone.append(ident)
        except aws.AWS_ERRORS as e:
            if aws.error_code(e) not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
                raise
    return gone


def decommission(rt: Runtime, dep, *, force: bool = False) -> tuple[str, dict]:
    """Delete the blue/green deployment object and the old source. Returns a message and what to
    journal (the caller records it with a fenced update).

    Raises BadInput when the deployment never switched over, AwsError when AWS refuses (the
    periodic job tries again next time)."""
    facts = dep.facts or {}
    old, bg = facts.get("old"), facts.get("blue_green")
    if not old or not bg:
        raise BadInput(f"deployment {dep.id} of {dep.cluster} has no old RDS source recorded: nothing to decommission")
    spec = RdsClusterSpec.model_validate(dep.spec)
    now = utcnow()
    snapshot = snapshot_name(old["identifier"], now)
    try:
        # The blue/green object goes first: RDS keeps the old environment tied to it until then.
        removed = bluegreen.delete(spec.region, bg["id"], delete_target=False)
        # The old replicas before their primary (deleting a primary would promote them to standalone).
        gone = _delete_old_replicas(spec.region, old.get("replicas") or [])
        what, final = _delete_old(spec.region, old["kind"], old["identifier"], snapshot)
        if gone:
            what += f"; old read replicas {', '.join(gone)} deleted"
    except aws.AWS_ERRORS as e:
        raise AwsError(f"{dep.cluster}: decommissioning {old['identifier']}: {aws.explain(e)}") from None
    detail = {"old": old["identifier"], "kind": old["kind"], "final_snapshot": final, "blue_green": bg["id"],
              "blue_green_removed": removed, "note": what, "forced": force, "old_replicas": gone}
    return f"{what}; blue/green deployment {bg['id']} " + ("removed" if removed else "already gone"), detail
