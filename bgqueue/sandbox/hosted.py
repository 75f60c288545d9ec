"""Servers on the root side of a ``HostNet`` that its worker hosts reach: each listens on loopback
and on its own address from the harness (one address per server, so one can be cut alone).

MariaDB pairs get the sandbox users for the hosts' network too (the pair's own are for
127.0.0.1/localhost only); PostgreSQL gets a pg_hba line for it; Redis binds the address.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from bgqueue.sandbox.hosts import HostNet
from bgqueue.sandbox.pair import (
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    META_DATABASE,
    MONITOR_PRIVILEGES,
    MONITOR_USER,
    REPL_PRIVILEGES,
    REPL_USER,
    ClusterPair,
    SandboxPasswords,
    native_hash,
)
from bgqueue.sandbox.postgres import PostgresServer
from bgqueue.sandbox.redis_server import RedisServer


def client_pattern(net: HostNet) -> str:
    """The MySQL account host matching every address of the harness (servers' and hosts')."""
    return f"10.{net.net}.%"


def hosted_pair(net: HostNet, workdir: Path, name: str, blue_id: int, green_id: int, passwords: SandboxPasswords,
                cache_dir: Path | None = None) -> ClusterPair:
    """A started blue → green pair whose servers the hosts reach (``pair.blue.host`` is the address)."""
    pair = ClusterPair(workdir, name, blue_id, green_id, passwords, cache_dir=cache_dir)
    for server in (pair.blue, pair.green):
        server.host = net.server_address()  # type: ignore[misc]  # the class default is loopback
        # A later bind-address wins; MariaDB 10.11 takes a list. The general log is how a checker
        # sees every statement a worker sent (it is enabled per round, to a table).
        server.options = (*server.options, f"bind-address=127.0.0.1,{server.host}")
    pair.start()
    try:
        _grant_hosts(pair, client_pattern(net))
    except BaseException:
        pair.stop()
        raise
    return pair


def _grant_hosts(pair: ClusterPair, host: str) -> None:
    pw = pair.passwords
    with pair.blue.root() as b, pair.green.root() as g:
        bc, gc = b.cursor(), g.cursor()
        for cur in (bc, gc):  # per server, out of the binlog (as the pair's own replication user)
            cur.execute("SET SESSION sql_log_bin=0")
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (REPL_USER, host, pw.repl))
            cur.execute(f"GRANT {REPL_PRIVILEGES} ON *.* TO %s@%s", (REPL_USER, host))
            cur.execute("SET SESSION sql_log_bin=1")
        bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (ADMIN_USER, host, native_hash(pw.admin)))
        bc.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (ADMIN_USER, host))
        bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (APP_USER, host, native_hash(pw.app)))
        bc.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{APP_DATABASE}`.* TO %s@%s", (APP_USER, host))
        bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (MONITOR_USER, host, native_hash(pw.monitor)))
        bc.execute(f"GRANT {MONITOR_PRIVILEGES} ON *.* TO %s@%s", (MONITOR_USER, host))
        bc.execute(f"GRANT INSERT, UPDATE, DELETE, CREATE ON `{META_DATABASE}`.* TO %s@%s", (MONITOR_USER, host))
        # Green replicates from blue's reachable address (as the fleet file names blue), not loopback.
        gc.execute("STOP SLAVE")
        gc.execute("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                   "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", (pair.blue.host, pair.blue.port, REPL_USER, pw.repl))
        gc.execute("START SLAVE")
        pair.wait_green_synced(bc, gc)


def hosted_redis(net: HostNet, workdir: Path) -> RedisServer:
    """A started redis-server on loopback and a harness address (``url`` names the latter). With a
    password: Redis refuses non-loopback clients without one (protected mode), and rightly so."""
    server = RedisServer(workdir, requirepass=secrets.token_urlsafe(18))
    server.bind = ("127.0.0.1", net.server_address())
    return server.start()


class HostedPostgres(PostgresServer):
    """A PostgresServer listening on loopback and ``address``, accepting the hosts' network."""

    def __init__(self, net: HostNet, workdir: Path, **kw):
        super().__init__(workdir, **kw)
        self.host = net.server_address()  # type: ignore[misc]
        self.allowed = str(net.client_net)

    def _command(self) -> list[str]:
        return [f"listen_addresses=127.0.0.1,{self.host}" if a == "listen_addresses=127.0.0.1" else a
                for a in super()._command()]

    def _prepare(self) -> None:
        super()._prepare()
        hba = self.datadir / "pg_hba.conf"
        line = f"host all all {self.allowed} scram-sha-256\n"
        if line not in hba.read_text():
            with open(hba, "a") as f:
                f.write(line)
