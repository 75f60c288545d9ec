"""Issue 11, item 3: credentials scoped to their cluster, and no password ever sent in clear text.

Attacks tried: a fleet file that names another variable of the worker's environment (another
team's secret) as a ``password_env`` and points the cluster at a server of its choosing; a server
that asks for the password in clear text (``mysql_clear_password``, PAM's ``dialog``), watched
from the wire by a relay in front of a real mariadbd.
"""
from __future__ import annotations

import threading

import pytest
import yaml

from bgqueue.adapters.cdc.consumer import BinlogConsumer
from bgqueue.adapters.mysql.server import Server
from bgqueue.client import RoutedClient
from bgqueue.model.cdc import BinlogPipeline
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import ClusterSpec, FleetFileError, parse_fleet
from bgqueue.model.schema_base import Credentials, Endpoint
from bgqueue.sandbox import MariaDBServer
from tests.fixtures.bgq import bgqueue_cli, write_fleet
from tests.security.wiretap import Wiretap

ANOTHER_TEAMS_SECRET = "another-teams-secret-4711"
PAM_USER = "bgq_pam"
CLEAR_PASSWORD = "clear-text-please-0815"
CLEAR_PASSWORD_ENV = "BGQ_TEST_PAM_PASSWORD"


def _fleet_text(password_env: str, pipelines: list | None = None) -> str:
    cluster = {"name": "orders", "provider": "mysql", "blue": {"host": "10.0.0.1"}, "green": {"host": "10.0.0.2"},
               "admin": {"user": "bgq_admin", "password_env": password_env},
               "replication": {"user": "repl", "password_env": "BGQ_ORDERS_REPL_PASSWORD"}}
    if pipelines:
        cluster["pipelines"] = pipelines
    return yaml.safe_dump({"version": 1, "clusters": [cluster]}, sort_keys=False)


def test_a_fleet_file_may_name_only_variables_in_the_credential_scope(monkeypatch):
    monkeypatch.setenv("PAYMENTS_ADMIN_PASSWORD", ANOTHER_TEAMS_SECRET)
    with pytest.raises(FleetFileError) as e:
        parse_fleet(_fleet_text("PAYMENTS_ADMIN_PASSWORD"), "fleet.yaml")
    assert e.value.cluster == "orders" and e.value.field == "admin.password_env" and e.value.line == 11
    assert str(e.value).startswith("fleet.yaml:11: cluster 'orders': field admin.password_env: environment variable "
                                   "PAYMENTS_ADMIN_PASSWORD is outside the credential scope "
                                   "(BGQUEUE_CREDENTIAL_ENV_PATTERN='BGQ_*')")
    assert e.value.exit_code == 2 and ANOTHER_TEAMS_SECRET not in str(e.value)
    # A pipeline's credentials are scoped too, and the error says where.
    with pytest.raises(FleetFileError) as e:
        parse_fleet(_fleet_text("BGQ_ORDERS_ADMIN_PASSWORD", [{"kind": "binlog", "name": "app", "tables": ["a.b"],
                                                              "user": {"user": "cdc", "password_env": "HOME"}}]))
    assert e.value.field == "pipelines.0.user.password_env"
    # The pattern is a setting (comma-separated globs).
    monkeypatch.setenv("BGQUEUE_CREDENTIAL_ENV_PATTERN", "BGQ_*, PAYMENTS_*")
    assert parse_fleet(_fleet_text("PAYMENTS_ADMIN_PASSWORD")).clusters[0].admin.password_env == \
        "PAYMENTS_ADMIN_PASSWORD"


def test_a_stored_spec_naming_a_variable_outside_the_scope_is_not_resolved(monkeypatch):
    """Workers resolve credentials of stored specs (no fleet file is parsed there): checked again."""
    monkeypatch.setenv("PAYMENTS_ADMIN_PASSWORD", ANOTHER_TEAMS_SECRET)
    spec = ClusterSpec.model_validate(yaml.safe_load(_fleet_text("PAYMENTS_ADMIN_PASSWORD"))["clusters"][0])
    with pytest.raises(BadInput, match="PAYMENTS_ADMIN_PASSWORD is outside the credential scope") as e:
        spec.admin.password()
    assert ANOTHER_TEAMS_SECRET not in str(e.value)
    monkeypatch.setenv("BGQ_ORDERS_ADMIN_PASSWORD", "fine-0123")
    assert Credentials(user="a", password_env="BGQ_ORDERS_ADMIN_PASSWORD").password() == "fine-0123"


def test_fleet_check_sends_no_out_of_scope_secret_anywhere(tmp_path, bgq_env, cluster_pair_factory, unique_name):
    """`fleet check` on a hostile file: exit 2 naming file, cluster and field, and not one byte sent to the
    server the file names (here a listener that records whatever reaches it)."""
    pair = cluster_pair_factory(unique_name("scope"))
    path = write_fleet(tmp_path / "hostile.yaml", [pair])
    data = yaml.safe_load(path.read_text())
    with Wiretap(None) as attacker:
        data["clusters"][0]["blue"] = {"host": "127.0.0.1", "port": attacker.port}
        data["clusters"][0]["admin"]["password_env"] = "PAYMENTS_ADMIN_PASSWORD"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        p = bgqueue_cli("fleet", "check", str(path), env=dict(bgq_env, PAYMENTS_ADMIN_PASSWORD=ANOTHER_TEAMS_SECRET))
        assert p.returncode == 2, p.stderr
        assert f"{path}:" in p.stderr and f"cluster '{pair.name}': field admin.password_env: environment variable " \
               "PAYMENTS_ADMIN_PASSWORD is outside the credential scope" in p.stderr, p.stderr
        assert attacker.connections == 0 and ANOTHER_TEAMS_SECRET.encode() not in attacker.captured()
        assert ANOTHER_TEAMS_SECRET not in p.stdout + p.stderr


@pytest.fixture(params=["mysql_clear_password", "dialog"])
def pam_server(request, tmp_path, mariadb_cache_dir, monkeypatch):
    """A real mariadbd whose user authenticates through PAM (in-process auth_pam_v1): the server asks the
    client for the password in clear text, by the mysql_clear_password plugin or by PAM's dialog."""
    cleartext = "ON" if request.param == "mysql_clear_password" else "OFF"
    # detach: a PAM failure inside mariadbd must never reach this process's group.
    server = MariaDBServer(tmp_path / "pam", "pam", 9201, cache_dir=mariadb_cache_dir, detach=True,
                           options=["plugin_load_add=auth_pam_v1", f"pam_use_cleartext_plugin={cleartext}"]).start()
    with server.root() as c, c.cursor() as cur:
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED VIA pam USING 'other'", (PAM_USER,))
    monkeypatch.setenv(CLEAR_PASSWORD_ENV, CLEAR_PASSWORD)
    yield server
    server.stop()


def _clear_text_refused(tap: Wiretap, error: BaseException) -> None:
    assert CLEAR_PASSWORD.encode() not in tap.captured(), "the password crossed the wire in clear text"
    assert "asked for a clear-text password plugin: refused, no password sent" in str(error), repr(error)


def test_no_connection_of_bgqueue_sends_a_password_in_clear_text(pam_server, redis_url, runtime, unique_name):
    creds = Credentials(user=PAM_USER, password_env=CLEAR_PASSWORD_ENV)
    cluster = unique_name("pam")
    with Wiretap(("127.0.0.1", pam_server.port)) as tap:
        endpoint = Endpoint(host="127.0.0.1", port=tap.port)
        # The admin session (fleet check, the switchover, the checks; the sampler's probe goes through it).
        with pytest.raises(BadInput) as e:
            Server(endpoint, creds, label="blue", tls="disabled").connect()
        _clear_text_refused(tap, e.value)
        assert f"blue 127.0.0.1:{tap.port}: cannot connect" in str(e.value)

        # The embedded client.
        runtime.routing.init(cluster, "127.0.0.1", tap.port)
        with RoutedClient(cluster, redis_url, PAM_USER, CLEAR_PASSWORD, "appdb", tls="disabled",
                          endpoints=[("127.0.0.1", tap.port)], deadline_s=0.5) as client:
            with pytest.raises(Exception) as e:
                client.transaction(lambda cur: cur.execute("SELECT 1"))
        _clear_text_refused(tap, e.value)

        # The CDC consumer.
        spec = ClusterSpec.model_validate({
            "name": cluster, "provider": "mysql", "blue": {"host": "127.0.0.1", "port": tap.port},
            "green": {"host": "127.0.0.1", "port": 1}, "admin": {"user": PAM_USER, "password_env": CLEAR_PASSWORD_ENV},
            "replication": {"user": PAM_USER, "password_env": CLEAR_PASSWORD_ENV}, "tls": "disabled"})
        pipeline = BinlogPipeline.model_validate({"kind": "binlog", "name": "pam", "tables": ["appdb.t"]})
        consumer = BinlogConsumer(spec, pipeline, runtime.redis, stop=threading.Event(), owner="test")
        with pytest.raises(Exception) as e:
            consumer._probe(("127.0.0.1", tap.port))
        _clear_text_refused(tap, e.value)
        assert tap.connections == 3
