"""The demo's applications that do not embed ``bgqueue.client``: the first cluster sits behind a
real HAProxy (its fleet entry gets a ``haproxy`` routing target) with a plain-PyMySQL application
writing through the proxy; the second has maintenance mode on, with an application on the
SQLAlchemy integration. Each keeps a ledger: the demo's table shows its path, the errors it saw
and the acknowledged rows missing from the writer afterwards (which must be none)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bgqueue.app.paths import PathWriter, create_table, lost, proxy_app, sqlalchemy_app

PROXY_TABLE = "appdb.demo_proxy_app"
POOL_TABLE = "appdb.demo_pool_app"


@dataclass
class DemoPaths:
    sandbox: object
    workdir: Path
    proxy: object | None = None
    engine: object | None = None
    writers: dict[str, PathWriter] = field(default_factory=dict)  # cluster name -> its path app

    @property
    def proxy_pair(self):
        return self.sandbox.pairs[0]

    @property
    def pool_pair(self):
        return self.sandbox.pairs[1]

    def start_proxy(self) -> None:
        """HAProxy in front of the first pair: blue ready, green in drain (health-checked), as an
        operator prepares it before a switchover."""
        from bgqueue.sandbox.haproxy import Backend, BackendServer, HAProxyServer, create_check_user

        pair = self.proxy_pair
        for server in (pair.blue, pair.green):
            create_check_user(server)
        backend = Backend("writer", (BackendServer("blue", pair.blue.host, pair.blue.port),
                                     BackendServer("green", pair.green.host, pair.green.port, state="drain")))
        self.proxy = HAProxyServer(self.workdir / "haproxy", backend, admin="unix").start()

    def fleet_entries(self, clusters: list[dict]) -> None:
        """Add the proxy's routing target and the pool cluster's maintenance mode to the fleet file."""
        by_name = {c["name"]: c for c in clusters}
        by_name[self.proxy_pair.name]["routing"] = [{
            "kind": "haproxy", "admin": self.proxy.admin_address, "backend": "writer",
            "blue_server": "blue", "green_server": "green"}]
        by_name[self.pool_pair.name]["maintenance"] = {"mode": "drain", "ack_timeout_s": 5, "on_timeout": "proceed"}

    def start_apps(self, redis_url: str, password: str, rate: float) -> None:
        from bgqueue.client.sqlalchemy import routed_engine
        from bgqueue.sandbox import APP_DATABASE, APP_USER

        for pair, table in ((self.proxy_pair, PROXY_TABLE), (self.pool_pair, POOL_TABLE)):
            with pair.blue.root() as c:
                create_table(c, table)
            pair.wait_green_synced()
        via_proxy = proxy_app("127.0.0.1", self.proxy.frontend_port("writer"), APP_USER, password, APP_DATABASE,
                              PROXY_TABLE)
        pool = self.pool_pair
        self.engine = routed_engine(pool.name, redis_url, APP_USER, password, APP_DATABASE, maintenance=True,
                                    client_id="demo-sqlalchemy-app", pool_size=2,
                                    endpoints=[(pool.blue.host, pool.blue.port), (pool.green.host, pool.green.port)])
        self.writers[self.proxy_pair.name] = PathWriter("haproxy", rate, via_proxy).start()
        self.writers[pool.name] = PathWriter("sqlalchemy+maintenance", rate, sqlalchemy_app(self.engine, POOL_TABLE)
                                             ).start()

    def stop(self) -> None:
        for w in self.writers.values():
            w.stop()
        if self.engine is not None:
            self.engine.bgqueue_close()
            self.engine = None
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def outcome(self, cluster: str, on_green: bool) -> AppOutcome:
        """What the cluster's path application saw over the whole run, and its rows missing from
        the writer (``on_green``: the cluster ended on green)."""
        w = self.writers[cluster]
        pair = next(p for p in self.sandbox.pairs if p.name == cluster)
        proxied = w.name == "haproxy"
        with (pair.green if on_green else pair.blue).root() as c:
            missing = lost(c, PROXY_TABLE if proxied else POOL_TABLE, w.acked_ids())
        return AppOutcome(path="haproxy" if proxied else "registry + maintenance",
                          application="plain PyMySQL via HAProxy" if proxied else "SQLAlchemy pool",
                          acked=len(w.acked), errors=len(w.errors), max_gap_ms=w.gap_ms(float("-inf"), float("inf")),
                          lost=missing, samples=list(w.samples))


@dataclass
class AppOutcome:
    path: str
    application: str
    acked: int
    errors: int
    max_gap_ms: float
    lost: int
    samples: list[str]
