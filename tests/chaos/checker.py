"""An independent invariant checker: it reads the servers (root, over their unix sockets), Redis and
the store's tables with its own queries and its own rules; it trusts no engine function.

During a round (``WritableSampler``, every ~100 ms): at most one writable server per cluster.
After it (``check_cluster``): exactly one writable; the other replicating from it (IO and SQL
threads running, its master is the writable one); the route (store and Redis copy) names the
writable one; every acknowledged write of the ledger on both servers; the deployment terminal with
a journal that agrees with the servers; no server-changing step done twice for one epoch; and
the zombie statements (``zombie_statements``) found in the servers' general logs.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import pymysql

from bgqueue.sandbox.pair import ADMIN_USER, ClusterPair

# Statements that change a server (the procedure's vocabulary and more).
CHANGING = ("SET GLOBAL", "KILL", "STOP SLAVE", "STOP REPLICA", "RESET", "CHANGE MASTER", "CHANGE REPLICATION",
            "START SLAVE", "START REPLICA", "FLUSH", "PURGE")
TERMINAL = {"COMPLETED", "ROLLED_BACK", "SWITCHOVER_FAILED", "NO_GO", "FAILED", "CANCELLED", "ABORTED"}
# Which server must be the writer once a deployment is in this phase.
WRITER_AFTER = {"COMPLETED": "green", "MONITORING": "green", "CDC_MIGRATING": "green", "ROLLED_BACK": "blue",
                "SWITCHOVER_FAILED": "blue", "NO_GO": "blue", "PENDING": "blue", "CANCELLED": "blue"}
SERVER_STEPS = {"fence", "promote", "reverse_replication", "lift_fence", "refence"}


def enable_general_log(pair: ClusterPair) -> None:
    for server in (pair.blue, pair.green):
        with server.root() as c, c.cursor() as cur:
            cur.execute("SET GLOBAL log_output = 'TABLE'")
            cur.execute("SET GLOBAL general_log = ON")


def _read_only(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        return int(cur.fetchone()[0])


class WritableSampler(threading.Thread):
    """Samples every pair's read_only every ``interval_s``: a sample with both writable is a violation."""

    def __init__(self, pairs: list[ClusterPair], interval_s: float = 0.1):
        super().__init__(name="chaos-sampler", daemon=True)
        self.pairs, self.interval_s = pairs, interval_s
        self.samples = 0
        self.two_writable: list[tuple[str, float]] = []
        self.unreadable = 0
        self._stop_event = threading.Event()
        self._conns: dict[str, pymysql.connections.Connection] = {}

    def _conn(self, server):
        c = self._conns.get(server.name)
        if c is None:
            c = self._conns[server.name] = server.root(connect_timeout=1, read_timeout=2)
        return c

    def run(self) -> None:
        while not self._stop_event.is_set():
            t0 = time.monotonic()
            for pair in self.pairs:
                try:
                    ro = [_read_only(self._conn(s)) for s in (pair.blue, pair.green)]
                except Exception:
                    self.unreadable += 1
                    for s in (pair.blue, pair.green):
                        c = self._conns.pop(s.name, None)
                        if c is not None:
                            try:
                                c.close()
                            except Exception:
                                pass
                    continue
                if ro == [0, 0]:
                    self.two_writable.append((pair.name, time.time()))
            self.samples += 1
            self._stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))
        for c in self._conns.values():
            try:
                c.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


@dataclass
class ClusterVerdict:
    cluster: str
    phase: str
    reason: str | None
    problems: list[str] = field(default_factory=list)
    lost_writes: int = 0
    zombies: list[tuple] = field(default_factory=list)
    duplicate_steps: list[tuple] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems


def _status(conn) -> dict | None:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW SLAVE STATUS")
        return cur.fetchone()


def _scalar(conn, sql: str, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None


def _ids(conn) -> set[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM appdb.bgq_writes")
        return {int(r[0]) for r in cur.fetchall()}


def check_cluster(pair: ClusterPair, dep: dict, steps: list[dict], store_route: tuple | None,
                  redis_route: tuple | None, acked: list[int], catchup_s: float = 15.0) -> ClusterVerdict:
    """The final invariants of one cluster (see the module's doc). ``dep``/``steps``: rows of the
    store's deployments/steps tables; routes as (host, port)."""
    v = ClusterVerdict(pair.name, dep["phase"], dep.get("reason"))
    if dep["phase"] not in TERMINAL:
        v.problems.append(f"not terminal: {dep['phase']}")
    conns = {"blue": pair.blue.root(read_timeout=catchup_s + 10), "green": pair.green.root(read_timeout=catchup_s + 10)}
    servers = {"blue": pair.blue, "green": pair.green}
    try:
        writable = [n for n, c in conns.items() if _read_only(c) == 0]
        if len(writable) != 1:
            v.problems.append(f"{len(writable)} writable servers: {writable}")
            return v
        w = writable[0]
        r = "green" if w == "blue" else "blue"
        expect = WRITER_AFTER.get(dep["phase"])
        if expect and expect != w:
            v.problems.append(f"phase {dep['phase']} but {w} is the writer")
        if _status(conns[w]) is not None and (_status(conns[w]) or {}).get("Slave_SQL_Running") == "Yes":
            v.problems.append(f"the writer {w} is itself replicating")
        # The other replicates from it (its IO thread may take a few seconds to reconnect).
        deadline = time.monotonic() + catchup_s
        while True:
            st = _status(conns[r]) or {}
            ok = (st.get("Master_Port") == servers[w].port and st.get("Slave_IO_Running") == "Yes"
                  and st.get("Slave_SQL_Running") == "Yes")
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not ok:
            v.problems.append(f"{r} does not replicate from {w}: master port {st.get('Master_Port')}, IO "
                              f"{st.get('Slave_IO_Running')} {st.get('Last_IO_Error')!r}, SQL {st.get('Slave_SQL_Running')} "
                              f"{st.get('Last_SQL_Error')!r}")
        endpoint = (servers[w].host, servers[w].port)
        if store_route != endpoint:
            v.problems.append(f"store route {store_route} is not the writer {w} {endpoint}")
        if redis_route != endpoint:
            v.problems.append(f"Redis route {redis_route} is not the writer {w} {endpoint}")
        pos = _scalar(conns[w], "SELECT @@GLOBAL.gtid_binlog_pos")
        if ok:
            _scalar(conns[r], "SELECT MASTER_GTID_WAIT(%s, %s)", (pos, catchup_s))
        ack = set(acked)
        lost = (ack - _ids(conns[w])) | (ack - _ids(conns[r]))
        v.lost_writes = len(lost)
        if lost:
            v.problems.append(f"{len(lost)} acknowledged writes missing (e.g. {sorted(lost)[:5]})")
        # The journal: no server-changing step done twice in one epoch; the terminal step agrees.
        seen: dict[tuple, int] = {}
        for s in steps:
            if s["status"] == "done" and s["name"] in SERVER_STEPS:
                key = (s["procedure"], s["epoch"], s["name"])
                seen[key] = seen.get(key, 0) + 1
        v.duplicate_steps = [k for k, n in seen.items() if n > 1]
        if v.duplicate_steps:
            v.problems.append(f"steps done twice in one epoch: {v.duplicate_steps}")
        done = {(s["procedure"], s["name"]) for s in steps if s["status"] == "done"}
        if dep["phase"] == "COMPLETED" and ("switchover", "reverse_replication") not in done:
            v.problems.append("COMPLETED without a done reverse_replication in the journal")
        if dep["phase"] == "ROLLED_BACK" and ("rollback", "rolled_back") not in done:
            v.problems.append("ROLLED_BACK without a done rolled_back in the journal")
        fenced = any(s["procedure"] == "switchover" and s["name"] == "fence" for s in steps)
        # Failed before the fence (a server out of reach at the start: "not started") changed
        # nothing and needs no lift; once fenced, the fence must have been lifted.
        if dep["phase"] == "SWITCHOVER_FAILED" and fenced and ("switchover", "lift_fence") not in done:
            v.problems.append("SWITCHOVER_FAILED after the fence without a done lift_fence in the journal")
    finally:
        for c in conns.values():
            c.close()
    return v


# --- zombie statements from the general log -------------------------------------------------

# PyMySQL writes a float as 5.0e0.
_GET_LOCK = re.compile(r"GET_LOCK\(\s*'([^']*)'\s*,\s*([0-9.eE+-]+)\s*\)", re.I)
_SECRET = re.compile(r"(PASSWORD\s*=?\s*)'(?:[^'\\]|\\.)*'", re.I)


def redact(statement: str) -> str:
    """A statement as a report may show it: passwords replaced, at most 120 characters."""
    return _SECRET.sub(r"\1'***'", statement)[:120]
_KILL = re.compile(r"^\s*KILL\s+(?:CONNECTION\s+)?(\d+)", re.I)


def general_log(server) -> list[tuple[datetime, int, str, str]]:
    """The admin user's rows of the server's general log, in the order the server wrote them."""
    with server.root(read_timeout=30) as c, c.cursor() as cur:
        # A Connect row is written before the session has a user: take every row of the admin's threads.
        cur.execute("SELECT event_time, thread_id, command_type, CONVERT(argument USING utf8mb4) FROM mysql.general_log "
                    "WHERE thread_id IN (SELECT thread_id FROM mysql.general_log WHERE user_host LIKE %s)",
                    (f"{ADMIN_USER}[%",))
        return [(r[0], int(r[1]), r[2], r[3] or "") for r in cur.fetchall()]


def zombie_statements(rows: list[tuple[datetime, int, str, str]], lock_name: str,
                      epoch_starts: list[datetime]) -> list[tuple]:
    """Server-changing statements sent by a worker that had lost the cluster's procedure.

    The server's own record of ownership is its procedure lock: a procedure run takes it with
    GET_LOCK(name, >0) after KILLing the session that held it (a takeover); a reconnect of a run
    asks GET_LOCK(name, 0) and gets it only when nobody holds it. So, replaying the general log:
      (a) a changing statement from a session that took part in the procedure (asked for the lock)
          but does not hold it at that moment;
      (b) a changing statement from the holder after a newer procedure run had claimed the
          deployment but before that run took the lock over: the old worker had lost the deployment
          and was not yet fenced out. The claim is known no later than the taker's Connect (a run
          claims in the store, then connects) or a journal row of a newer run (``epoch_starts``).
    The KILL a taker sends to the old holder just before its GET_LOCK is the takeover itself.
    """
    lockers = {t for _, t, cmd, arg in rows if cmd == "Query" and lock_name in arg and "GET_LOCK" in arg.upper()}
    queries = [(at, t, arg) for at, t, cmd, arg in rows if cmd == "Query" and t in lockers]
    holder: int | None = None
    holder_since: datetime | None = None
    holder_took_it = False
    connected: dict[int, datetime] = {}
    quit_threads: set[int] = set()
    out = []
    for i, (at, t, cmd, arg) in enumerate(rows):
        if t not in lockers:
            continue
        if cmd == "Connect":
            connected[t] = at
            continue
        if cmd == "Quit":
            quit_threads.add(t)
            if holder == t:
                holder = None
            continue
        if cmd != "Query":
            continue
        m = _GET_LOCK.search(arg)
        if m and m.group(1) == lock_name:
            if float(m.group(2)) > 0:
                if holder is not None and holder != t:
                    # (b): the old holder's changes between the newer run's claim and this takeover.
                    known = [e for e in epoch_starts if holder_since is not None and holder_since < e <= at]
                    if holder_took_it:  # the holder's own run journals after taking the lock: not newer
                        known = known[1:]
                    if t in connected:
                        known.append(connected[t])
                    claimed = min(known, default=None)
                    if claimed is not None:
                        for at2, t2, arg2 in queries:
                            if t2 == holder and claimed < at2 < at and arg2.upper().lstrip().startswith(CHANGING):
                                out.append(("after-claim", t2, str(at2), redact(arg2)))
                holder, holder_since, holder_took_it = t, at, True
            elif holder is None or holder in quit_threads:
                holder, holder_since, holder_took_it = t, at, False
            continue
        if arg.upper().lstrip().startswith(CHANGING) and holder != t:
            nxt = next((a for _, t2, c2, a in rows[i + 1:] if t2 == t and c2 == "Query"), "")
            m2 = _GET_LOCK.search(nxt)
            if _KILL.match(arg) and m2 and m2.group(1) == lock_name and float(m2.group(2)) > 0:
                continue  # the takeover's own KILL of the holder
            out.append(("not-holder", t, str(at), redact(arg)))
    return out
