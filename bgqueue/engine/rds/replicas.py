"""Read replicas of an RDS source across the switchover.

In-Region read replicas are part of the blue/green deployment: RDS gives green a replica of its
own for each of blue's, and the switchover moves the names, so the new primary's replicas answer
at the original names and blue's become ``<name>-oldN``. After the switchover bgqueue verifies
that (one DescribeDBInstances call for the primary, its replicas and the old ones):

  - the new primary lists every original replica name, and nothing else;
  - each replica exists, is ``available``, replicates from the new primary and RDS reports its
    read replication as ``replicating``;
  - the old replicas are found and reported for decommission (``facts.old.replicas``), deleted
    with the old primary when the retention period ends.
Cross-Region and cascading replicas never get here: the support checks refuse them before
anything is created (``adapters.aws.topology.replica_problems``).
"""
from __future__ import annotations

from bgqueue.adapters.aws.source import identifier_of, replicas_detail

OLD_SUFFIX = "-old1"


def original_replicas(facts: dict) -> list[str]:
    """Blue's in-Region replicas as prepare described them (identifiers, not cross-Region ARNs)."""
    return [r for r in (facts.get("source") or {}).get("replicas") or [] if not r.startswith("arn:")]


def old_names(bg: dict, primary: str, replicas: list[str]) -> dict[str, str]:
    """Each original replica name → the old one, from the switchover's member details when RDS gave
    them (``SourceMember`` is the old ARN, ``TargetMember`` the name it now holds), else ``-old1``."""
    out = {r: f"{r}{OLD_SUFFIX}" for r in replicas}
    for d in bg.get("SwitchoverDetails") or []:
        try:
            _, old = identifier_of(d.get("SourceMember") or "")
            _, new = identifier_of(d.get("TargetMember") or "")
        except ValueError:
            continue
        if new in out and new != primary:
            out[new] = old
    return out


def verify(region: str, primary: str, replicas: list[str], bg: dict) -> dict:
    """What the new primary's replicas look like after the switchover (see the module docstring).
    ``{"new": [...], "old": [...], "problems": [...]}``. Raises AwsError when RDS cannot be read."""
    if not replicas:
        return {"new": [], "old": [], "problems": []}
    old = old_names(bg, primary, replicas)
    found = {d["DBInstanceIdentifier"]: d for d in replicas_detail(region, [primary, *replicas, *old.values()])}
    problems: list[str] = []
    now = found.get(primary)
    listed = set((now or {}).get("ReadReplicaDBInstanceIdentifiers") or [])
    if now is None:
        problems.append(f"the new primary {primary} is not found")
    else:
        if set(replicas) - listed:
            problems.append(f"the new primary {primary} does not list its replicas {', '.join(sorted(set(replicas) - listed))} "
                            f"(it lists: {', '.join(sorted(listed)) or 'none'})")
        if listed - set(replicas):
            problems.append(f"the new primary {primary} lists replicas that blue did not have: "
                            f"{', '.join(sorted(listed - set(replicas)))}")
    new_detail = []
    for r in replicas:
        d = found.get(r)
        if d is None:
            problems.append(f"replica {r} does not exist after the switchover")
            continue
        status: dict = next((s for s in d.get("StatusInfos") or [] if s.get("StatusType") == "read replication"), {})
        source = d.get("ReadReplicaSourceDBInstanceIdentifier")
        new_detail.append({"identifier": r, "status": d.get("DBInstanceStatus"), "source": source,
                           "replication": status.get("Status"), "engine_version": d.get("EngineVersion")})
        if source != primary:
            problems.append(f"replica {r} replicates from {source or 'nothing'}, not from the new primary {primary}")
        if d.get("DBInstanceStatus") != "available":
            problems.append(f"replica {r} is {d.get('DBInstanceStatus')!r}, not 'available'")
        if status.get("Status") != "replicating" or status.get("Normal") is False:
            problems.append(f"replica {r}: read replication is {status.get('Status') or 'not reported'}"
                            + (f" ({status['Message']})" if status.get("Message") else ""))
    old_detail = [{"identifier": o, "replaced_by": r, "exists": o in found} for r, o in old.items()]
    return {"new": new_detail, "old": old_detail, "problems": problems}
