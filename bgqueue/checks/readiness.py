"""Is green ready to become the primary, and blue to become its reverse replica?"""
from __future__ import annotations

import re

from bgqueue.adapters.mysql.server import Server
from bgqueue.checks.context import CheckContext
from bgqueue.model.errors import BgqueueError
from bgqueue.model.results import CheckResult, failed, passed


def event_scheduler(ctx: CheckContext) -> CheckResult:
    """Scheduled events must keep running after the switch: green's scheduler must match blue's
    when blue has enabled events (replicated events sit SLAVESIDE_DISABLED on green until promoted)."""
    b = str(ctx.blue.scalar("SELECT @@GLOBAL.event_scheduler")).upper()
    g = str(ctx.green.scalar("SELECT @@GLOBAL.event_scheduler")).upper()
    enabled = int(ctx.blue.scalar("SELECT COUNT(*) FROM information_schema.EVENTS WHERE STATUS = 'ENABLED'") or 0)
    evidence = {"blue": b, "green": g, "enabled_events_on_blue": enabled}
    if enabled and b == "ON" and g != "ON":
        return failed("event_scheduler", f"blue runs {enabled} enabled event(s) with event_scheduler=ON but green has "
                      f"event_scheduler={g}: the events would stop after the switchover", evidence=evidence)
    if g == "ON" and b != "ON":
        return failed("event_scheduler", f"green has event_scheduler=ON but blue has {b}: events would start "
                      "running after the switchover", evidence=evidence)
    return passed("event_scheduler", f"blue {b}, green {g}, {enabled} enabled event(s)", evidence=evidence)


def reverse_readiness(ctx: CheckContext) -> CheckResult:
    """After the switchover blue replicates from green: green needs a binlog that carries every
    transaction (log_bin, log_slave_updates) and a replication user blue can log in with."""
    problems = []
    g_vars = dict(ctx.green.rows("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                                 "('log_bin', 'log_slave_updates', 'log_replica_updates', 'gtid_mode')"))
    if str(g_vars.get("log_bin", "OFF")).upper() != "ON":
        problems.append("green has log_bin=OFF: blue could not replicate from it")
    if "ON" not in {str(g_vars.get(k, "")).upper() for k in ("log_slave_updates", "log_replica_updates")}:
        problems.append("green has log_slave_updates=OFF: its binlog lacks blue's transactions "
                        "(CDC could not resume on it)")
    repl = ctx.spec.replication
    probe = Server(ctx.spec.green, repl, label="green (as replication user)",
                   connect_timeout=ctx.spec.thresholds.connect_timeout_s, tls=ctx.spec.tls)
    grants: list[str] = []
    try:
        probe.connect()
        # SHOW GRANTS carries the password hash (IDENTIFIED BY PASSWORD '*…'): never keep it.
        grants = [re.sub(r"(?i)\s+IDENTIFIED\s+(BY\s+PASSWORD|VIA|WITH)\s+.*$", "", str(r[0]))
                  for r in probe.rows("SHOW GRANTS")]
        if not any("REPLICATION SLAVE" in g.upper() or "ALL PRIVILEGES" in g.upper() for g in grants):
            problems.append(f"user {repl.user!r} on green lacks REPLICATION SLAVE")
    except BgqueueError as e:
        problems.append(f"replication user cannot log in to green: {e}")
    finally:
        probe.close()
    evidence = {"green": g_vars, "replication_user": repl.user, "grants": grants[:5],
                "note": "checked from this worker; blue's own network path is proven when reverse replication starts"}
    if problems:
        return failed("reverse_readiness", "; ".join(problems), evidence=evidence)
    return passed("reverse_readiness", f"green binlog ready, {repl.user!r} can log in with REPLICATION SLAVE",
                  evidence=evidence)
