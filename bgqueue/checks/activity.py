"""Blue must be quiet enough to fence: no long-running transaction, no DDL in flight.

Both clear by themselves, so both are retryable: the engine WAITs on them until the deadline.

Other sessions' statement text never leaves this module (it can carry secrets: ``ALTER USER …
IDENTIFIED BY '…'`` waiting on a lock), since the evidence goes to the store, the result backend,
``bgqueue status`` and the report: only its kind and digest (adapters/mysql/statements.py).
"""
from __future__ import annotations

import re

from bgqueue.adapters.mysql.statements import describe_statement
from bgqueue.checks.context import CheckContext
from bgqueue.model.results import CheckResult, failed, passed

_DDL = re.compile(r"^\s*(ALTER|CREATE\s+(UNIQUE\s+)?INDEX|CREATE\s+TABLE|DROP|RENAME|TRUNCATE|OPTIMIZE)\b", re.I)
_DDL_STATES = ("altering table", "copy to tmp table", "creating index", "committing alter table")
def blue_activity(ctx: CheckContext) -> CheckResult:
    limit = ctx.spec.thresholds.max_trx_age_s
    trx = ctx.blue.rows(
        "SELECT t.trx_id, t.trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), p.USER "
        "FROM information_schema.INNODB_TRX t LEFT JOIN information_schema.PROCESSLIST p "
        "ON p.ID = t.trx_mysql_thread_id WHERE t.trx_started < NOW() - INTERVAL %s SECOND "
        "ORDER BY t.trx_started", (int(limit),))
    ddl = [(pid, user, describe_statement(info), state) for pid, user, command, state, info in ctx.blue.rows(
        "SELECT ID, USER, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query'")
        if _DDL.match(info or "") or any(s in (state or "").lower() for s in _DDL_STATES)]
    problems = []
    if trx:
        oldest = trx[0]
        problems.append(f"{len(trx)} transaction(s) open longer than {limit:g}s on blue (oldest: "
                        f"{oldest[2]}s, thread {oldest[1]}, user {oldest[3]!r})")
    if ddl:
        problems.append(f"DDL in flight on blue: thread {ddl[0][0]} ({ddl[0][1]!r}): {ddl[0][2]}")
    evidence = {"long_transactions": [{"trx": str(t[0]), "thread": t[1], "age_s": t[2], "user": t[3]}
                                      for t in trx[:10]],
                "ddl": [{"thread": d[0], "user": d[1], "statement": d[2], "state": d[3]} for d in ddl[:10]]}
    if problems:
        return failed("blue_activity", "; ".join(problems), retryable=True, value=len(trx) + len(ddl),
                      threshold=f"no transaction older than {limit:g}s, no DDL", evidence=evidence)
    return passed("blue_activity", f"no transaction older than {limit:g}s, no DDL", value=0, evidence=evidence)
