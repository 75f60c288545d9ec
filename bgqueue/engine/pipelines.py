"""Moving a cluster's CDC pipelines to the new primary from a recorded checkpoint (switchover
and rollback alike). Re-entrant: a call advances every pipeline as far as it can now."""
from __future__ import annotations

from bgqueue.adapters.cdc.migration import migrate_pipelines
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store.deployments import Claim
from bgqueue.adapters.store.journal import Journal, latest_checkpoint
from bgqueue.model.fleet import AnySpec
from bgqueue.model.outcomes import DONE, Next


def move_pipelines(rt: Runtime, claim: Claim, spec: AnySpec, kind: str) -> Next:
    """Move the cluster's CDC pipelines to the new primary from the latest ``kind`` checkpoint.
    Re-entrant: returns a wait while a pipeline is still moving."""
    journal = Journal(rt.store, claim, "cdc")
    if not spec.pipelines:
        journal.note(f"{kind}_pipelines", "skipped", pipelines=0)
        return DONE
    checkpoint = latest_checkpoint(rt.store, claim.deployment_id, kind)
    if checkpoint is None:
        journal.note(f"{kind}_pipelines", "failed", reason=f"no {kind} checkpoint recorded")
        return DONE
    progress = migrate_pipelines(spec, checkpoint, journal, None, redis=rt.redis, routing=rt.routing)
    if not progress.done:
        return Next(wait_s=progress.wait_s or 0.5, detail="CDC pipelines moving")
    # Green is the writer already: a CDC problem is recorded (and watched by monitoring), not undone.
    return DONE
