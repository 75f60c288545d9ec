"""Issue 11, item 2: TLS that checks who the server is, for every connection bgqueue makes.

Real mariadbd servers started with certificates made by ``openssl`` (bgqueue/sandbox/tls.py):
signed by the CA the fleet file trusts, by another CA, or for another host name; and servers
with no TLS at all. Attacks tried: an impostor's certificate (another CA), a certificate for
another name, a server without TLS behind ``tls: required``, a replica that cannot verify its
source after a switchover.
"""
from __future__ import annotations

import ssl
import threading
import time

import pymysql
import pytest

from bgqueue.adapters.cdc.consumer import BinlogConsumer
from bgqueue.adapters.metrics.probe import ClusterProbe
from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.client import RoutedClient
from bgqueue.client.routed import WriteUnavailable
from bgqueue.engine import lifecycle
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.model.schema_base import Credentials, Endpoint
from bgqueue.sandbox import ADMIN_PASSWORD_ENV, ADMIN_USER, APP_DATABASE, APP_USER, MariaDBServer
from bgqueue.sandbox.pair import USER_HOSTS, native_hash
from tests.fixtures.bgq import bgqueue_cli
from tests.security.conftest import put_in_phase

ADMIN = Credentials(user=ADMIN_USER, password_env=ADMIN_PASSWORD_ENV)
CDC_USER = "bgq_cdc_tls"


def _verify(ca) -> dict:
    return {"mode": "verify", "ca": str(ca.cert)}


def _tls(**fields):
    from bgqueue.model.schema_base import Tls  # imported here: each test fails on its own without it

    return Tls(**fields)


def _cipher(server: Server) -> str:
    return str(server.rows("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1])


def test_verify_connects_to_servers_whose_certificates_our_ca_signed(cluster_pair_factory, unique_name, ca,
                                                                      tls_fleet, bgq_env):
    pair = cluster_pair_factory(unique_name("tlsok"), tls=ca)
    path = tls_fleet([pair], _verify(ca))
    p = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert p.returncode == 0, p.stderr
    spec = load_fleet(path).clusters[0]
    assert spec.tls == _tls(mode="verify", ca=str(ca.cert))
    # By IP address (SAN IP:127.0.0.1) and by name (SAN DNS:localhost): both encrypted.
    for host in ("127.0.0.1", "localhost"):
        with Server(Endpoint(host=host, port=pair.blue.port), spec.admin, label="blue", tls=spec.tls) as s:
            assert _cipher(s), host
    # The sampler's probe (monitor user) reaches both over verified TLS.
    probe = ClusterProbe(spec)
    try:
        _, figures = probe.sample()
    finally:
        probe.close()
    assert "probe_p50_ms" in figures and figures.get("probe_errors", 0) == 0, figures


def test_a_certificate_from_another_ca_is_refused_naming_the_server(cluster_pair_factory, unique_name, ca,
                                                                     other_ca, tls_fleet, bgq_env, redis_url,
                                                                     runtime, sandbox_passwords):
    name = unique_name("tlsimp")
    pair = cluster_pair_factory(name, tls=other_ca)  # an impostor: its certificates come from another CA
    path = tls_fleet([pair], _verify(ca))
    p = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert p.returncode == 2, p.stderr
    assert f"cluster '{name}': field blue: blue 127.0.0.1:{pair.blue.port}: cannot connect: " \
           "TLS verification failed" in p.stderr, p.stderr
    assert f"field green: green 127.0.0.1:{pair.green.port}" in p.stderr
    spec = load_fleet(path).clusters[0]

    with pytest.raises(BadInput, match=rf"blue 127\.0\.0\.1:{pair.blue.port}: cannot connect: TLS verification "
                                       "failed: .*certificate"):
        Server(spec.blue, spec.admin, label="blue", tls=spec.tls).connect()

    # The embedded client: no write reaches the impostor (and no password was sent to it).
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with RoutedClient(spec.name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, tls=spec.tls,
                      endpoints=[(spec.blue.host, spec.blue.port), (spec.green.host, spec.green.port)],
                      deadline_s=0.5, max_backoff_s=0.05) as client:
        with pytest.raises(WriteUnavailable) as e:
            client.transaction(lambda cur: cur.execute("SELECT 1"))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(e.value.last_error)

    # The CDC consumer's connections (its probe and the binlog reader's own) are refused too.
    consumer = BinlogConsumer(spec, _binlog_pipeline(), runtime.redis, stop=threading.Event(), owner="test")
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        consumer._probe((spec.blue.host, spec.blue.port))

    # The sampler's probe gets no figure from an impostor.
    probe = ClusterProbe(spec)
    try:
        _, figures = probe.sample()
    finally:
        probe.close()
    assert "probe_p50_ms" not in figures, figures


def test_a_certificate_for_another_host_name_is_refused(tmp_path, mariadb_cache_dir, ca, sandbox_passwords):
    cert = ca.issue(tmp_path / "certs", "elsewhere", hosts=("db.elsewhere.invalid",))  # our CA, not this host
    server = MariaDBServer(tmp_path / "srv", "elsewhere", 9101, cache_dir=mariadb_cache_dir, tls=cert).start()
    try:
        with server.root() as c, c.cursor() as cur:
            for host in USER_HOSTS:
                cur.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s",
                            (ADMIN_USER, host, native_hash(sandbox_passwords.admin)))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s", (ADMIN_USER, host))
        endpoint = Endpoint(host="127.0.0.1", port=server.port)
        with pytest.raises(BadInput, match=rf"127\.0\.0\.1:{server.port}: cannot connect: TLS verification failed: "
                                           r"IP address mismatch"):
            Server(endpoint, ADMIN, label="blue", tls=_tls(mode="verify", ca=str(ca.cert))).connect()
        # The same server under required (encrypted, not authenticated) is reachable: only the name was wrong.
        with Server(endpoint, ADMIN, label="blue", tls="required") as s:
            assert _cipher(s)
    finally:
        server.stop()


def test_required_refuses_a_server_without_tls(cluster_pair_factory, unique_name, tls_fleet, bgq_env, redis_url,
                                               runtime, sandbox_passwords):
    name = unique_name("tlsnone")
    pair = cluster_pair_factory(name)  # no certificates: the server offers no TLS at all
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.have_ssl")
        assert cur.fetchone()[0] == "DISABLED"
    path = tls_fleet([pair], "required")
    p = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert p.returncode == 2 and f"cluster '{name}': field blue: blue 127.0.0.1:{pair.blue.port}: cannot connect: " \
                                  "TLS required but the server does not offer it" in p.stderr, p.stderr
    spec = load_fleet(path).clusters[0]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with RoutedClient(spec.name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, tls="required",
                      endpoints=[(spec.blue.host, spec.blue.port), (spec.green.host, spec.green.port)],
                      deadline_s=0.5, max_backoff_s=0.05) as client:
        # Not a lost connection but a refusal: not retried, the application sees it at once.
        with pytest.raises(pymysql.err.OperationalError, match="SSL is required"):
            client.transaction(lambda cur: cur.execute("SELECT 1"))


def test_the_client_verifies_and_reuses_one_ssl_context(cluster_pair_factory, unique_name, ca, runtime, redis_url,
                                                        sandbox_passwords, monkeypatch):
    pair = cluster_pair_factory(unique_name("tlscli"), tls=ca)
    name = pair.name
    runtime.routing.init(name, pair.blue.host, pair.blue.port)
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("CREATE TABLE appdb.t (id INT PRIMARY KEY)")
    with RoutedClient(name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE,
                      endpoints=[(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)],
                      tls=_tls(mode="verify", ca=str(ca.cert))) as client:
        def insert(cur):
            cur.execute("INSERT INTO t VALUES (1)")
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            return cur.fetchone()[1]
        assert client.transaction(insert)
        # Reconnects (a route flip does this) build no SSL context: PyMySQL's own, one per connect,
        # costs ~31 ms here (FACTS); only the handshake is paid.
        built = []
        real = ssl.create_default_context
        monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(1) or real(*a, **k))
        for _ in range(5):
            client._drop_connection()
            client.transaction(lambda cur: cur.execute("SELECT 1"))
        assert client.reconnects == 6 and built == []


def test_reverse_replication_after_a_switchover_is_verified_and_encrypted(cluster_pair_factory, unique_name, ca,
                                                                          tls_fleet, runtime, sandbox_passwords):
    pair = cluster_pair_factory(unique_name("tlsrev"), tls=ca)
    # Green refuses its replication user without TLS: blue's IO thread running proves the stream is encrypted.
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin=0")
        for host in USER_HOSTS:
            cur.execute("ALTER USER %s@%s REQUIRE SSL", ("bgq_repl", host))
    path = tls_fleet([pair], _verify(ca))
    dep_id = put_in_phase(runtime, path, Phase.READY)
    lifecycle.switch(runtime, dep_id)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.CDC_MIGRATING
    step = [s for s in journal.steps(runtime.store, dep_id, "switchover") if s.name == "reverse_replication"][0]
    assert step.status == "done", step.detail
    with pair.blue.root(cursorclass=pymysql.cursors.DictCursor) as c, c.cursor() as cur:
        deadline = time.monotonic() + 10
        while True:
            cur.execute("SHOW SLAVE STATUS")
            st = cur.fetchone()
            if st["Slave_IO_Running"] == "Yes" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert st["Master_Port"] == pair.green.port and st["Slave_IO_Running"] == "Yes", st["Last_IO_Error"]
    assert st["Master_SSL_Allowed"] == "Yes" and st["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert st["Master_SSL_CA_File"] == str(ca.cert)
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
        assert int(cur.fetchone()[1]) >= 1


def test_reverse_replication_that_cannot_verify_its_source_fails_the_step(cluster_pair_factory, unique_name, ca,
                                                                          other_ca, tls_fleet, runtime):
    pair = cluster_pair_factory(unique_name("tlsrevbad"), tls=ca)
    # bgqueue trusts our CA; the replica is told to trust another one: it must not replicate unverified.
    path = tls_fleet([pair], {"mode": "verify", "ca": str(ca.cert), "replication_ca": str(other_ca.cert)})
    dep_id = put_in_phase(runtime, path, Phase.READY)
    lifecycle.switch(runtime, dep_id)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.CDC_MIGRATING  # green took over all the same
    step = [s for s in journal.steps(runtime.store, dep_id, "switchover") if s.name == "reverse_replication"][0]
    assert step.status == "failed" and "the replica cannot connect" in step.detail["error"], step.detail
    assert "SSL" in step.detail["error"] or "certificate" in step.detail["error"], step.detail
    with pair.blue.root(cursorclass=pymysql.cursors.DictCursor) as c, c.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        st = cur.fetchone()
    assert st["Slave_IO_Running"] != "Yes" and st["Master_SSL_Verify_Server_Cert"] == "Yes"


def test_the_cdc_consumer_streams_over_verified_tls(cluster_pair_factory, unique_name, ca, tls_fleet, runtime,
                                                    cdc_tls_password):
    pair = cluster_pair_factory(unique_name("tlscdc"), tls=ca)
    with pair.blue.root() as c, c.cursor() as cur:  # a binlog reader that only TLS sessions may be
        cur.execute("SET SESSION sql_log_bin=0")
        for host in USER_HOSTS:
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s REQUIRE SSL", (CDC_USER, host, cdc_tls_password))
            cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO %s@%s", (CDC_USER, host))
    spec = load_fleet(tls_fleet([pair], _verify(ca))).clusters[0]
    pipeline = _binlog_pipeline(user={"user": CDC_USER, "password_env": CDC_TLS_PASSWORD_ENV})
    consumer = BinlogConsumer(spec, pipeline, runtime.redis, stop=threading.Event(), owner="test")
    consumer.flavour, position = consumer._probe((spec.blue.host, spec.blue.port))
    assert consumer.flavour == "mariadb" and position
    reader = consumer._open((spec.blue.host, spec.blue.port), position)
    try:
        assert reader.fetchone() is not None  # the binlog dump session is up (REQUIRE SSL let it in)
    finally:
        reader.close()


CDC_TLS_PASSWORD_ENV = "BGQ_TEST_CDC_TLS_PASSWORD"


@pytest.fixture
def cdc_tls_password(monkeypatch) -> str:
    import secrets

    password = secrets.token_urlsafe(18)
    monkeypatch.setenv(CDC_TLS_PASSWORD_ENV, password)
    return password


def _binlog_pipeline(**fields):
    from bgqueue.model.cdc import BinlogPipeline

    return BinlogPipeline.model_validate({"kind": "binlog", "name": "tls", "tables": ["appdb.t"], **fields})
