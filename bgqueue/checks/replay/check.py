"""The ``query_replay`` check: differing query classes are a NO_GO reason, with examples as evidence."""
from __future__ import annotations

from bgqueue.adapters.mysql.replay import PinFailed
from bgqueue.checks.context import CheckContext
from bgqueue.checks.replay.run import replay_cluster
from bgqueue.model.errors import BadInput
from bgqueue.model.results import CheckResult, failed, passed

CHECK = "query_replay"
NAMED = 3  # classes named in the reason (all are in the evidence, up to its limit)


def query_replay(ctx: CheckContext) -> CheckResult:
    """pass: every replayed class answered alike on green (declared differences listed in the
    evidence); fail (not retryable): the reason names the differing classes; error (retryable):
    blue and green could not be pinned at one point. A source that cannot be read fails."""
    spec = ctx.spec
    if getattr(spec, "replay", None) is None:
        return passed(CHECK, "no replay configured")
    assert ctx.blue is not None and ctx.green is not None
    try:
        report = replay_cluster(spec, ctx.blue, ctx.green)
    except BadInput as e:
        return failed(CHECK, f"cannot capture queries: {e}")
    except PinFailed as e:
        return CheckResult(CHECK, "error", f"blue and green could not be pinned at one point: {e}", retryable=True)
    evidence = report.as_dict()
    differing = report.differing
    summary = (f"{report.statements} statement(s) of {len(report.classes)} class(es) replayed at "
               f"{', '.join(report.positions[:1])}")
    if not differing:
        note = f"; {len(report.declared)} declared difference(s) reported" if report.declared else ""
        return passed(CHECK, summary + note, value=0, threshold=0, evidence=evidence)
    named = "; ".join(f"{c.qc.fingerprint[:120]} ({', '.join(sorted(c.kinds)) or 'latency'})" for c in differing[:NAMED])
    more = f"; and {len(differing) - NAMED} more" if len(differing) > NAMED else ""
    return failed(CHECK, f"{len(differing)} query class(es) answer differently on green: {named}{more}",
                  value=len(differing), threshold=0, evidence=evidence)
