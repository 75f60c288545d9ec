
import pytest

from bgqueue.model.fleet import FleetFileError, check_credentials, load_fleet, parse_fleet

GOOD = """\
version: 1
name: prod
defaults:
  thresholds: {max_lag_s: 2, sync_timeout_s: 100}
tiers:
  critical: {max_lag_s: 0.5}
clusters:
  - name: orders
    provider: mysql
    tier: critical
    blue: {host: 10.0.0.1, port: 3306}
    green: {host: 10.0.0.2}
    admin: {user: bgq_admin, password_env: BGQ_ORDERS_ADMIN_PW}
    replication: {user: repl, password_env: BGQ_ORDERS_REPL_PW}
    critical_tables: [shop.orders]
    thresholds: {catchup_timeout_s: 3}
  - name: users
    provider: mysql
    blue: {host: 10.0.0.3}
    green: {host: 10.0.0.4}
    admin: {user: bgq_admin, password_env: BGQ_USERS_ADMIN_PW}
    replication: {user: repl, password_env: BGQ_USERS_REPL_PW}
"""


def test_good_file_merges_thresholds_defaults_tier_cluster():
    f = parse_fleet(GOOD, "prod.yaml")
    orders, users = f.clusters
    assert orders.thresholds.max_lag_s == 0.5  # tier beats defaults
    assert orders.thresholds.sync_timeout_s == 100  # defaults beat built-in
    assert orders.thresholds.catchup_timeout_s == 3  # cluster beats all
    assert users.thresholds.max_lag_s == 2
    assert users.green.port == 3306


def test_the_model_never_holds_a_password(monkeypatch):
    monkeypatch.setenv("BGQ_ORDERS_ADMIN_PW", "s3cret-value")
    dumped = parse_fleet(GOOD, "prod.yaml").model_dump_json()
    assert "s3cret-value" not in dumped and "BGQ_ORDERS_ADMIN_PW" in dumped


def _err(text: str) -> FleetFileError:
    with pytest.raises(FleetFileError) as e:
        parse_fleet(text, "f.yaml")
    return e.value


def test_unknown_key_names_file_line_cluster_and_field():
    e = _err(GOOD.replace("    critical_tables: [shop.orders]", "    critical_tabels: [shop.orders]"))
    assert e.cluster == "orders" and e.field == "critical_tabels" and e.line == 15
    assert str(e).startswith("f.yaml:15: cluster 'orders': field critical_tabels: unknown key")


def test_bad_value_is_located():
    e = _err(GOOD.replace("green: {host: 10.0.0.4}", "green: {host: 10.0.0.4, port: 99999}"))
    assert (e.cluster, e.field, e.line) == ("users", "green.port", 20)
    assert "65535" in str(e)


def test_duplicate_cluster_name():
    e = _err(GOOD.replace("name: users", "name: orders"))
    assert e.cluster == "orders" and e.field == "name" and "duplicate" in str(e) and e.line == 17


def test_malformed_yaml_has_a_line():
    e = _err("clusters:\n  - name: [unclosed\n")
    assert "not valid YAML" in str(e) and e.line is not None


@pytest.mark.parametrize("text,needle", [
    ("- a list", "must be a mapping"),
    ("clusters: []", "clusters"),
    (GOOD.replace("provider: mysql\n    tier", "provider: oracle\n    tier"), "provider"),
    (GOOD.replace("tier: critical", "tier: gold"), "unknown tier 'gold'"),
    (GOOD.replace("{max_lag_s: 0.5}", "{max_lag_s: -1}"), "tiers.critical.max_lag_s"),
    (GOOD.replace("password_env: BGQ_ORDERS_ADMIN_PW", "password: hunter2"), "password"),
    (GOOD.replace("[shop.orders]", "[orders]"), "database.table"),
    (GOOD.replace("green: {host: 10.0.0.2}", "green: {host: 10.0.0.1}"), "same endpoint"),
])
def test_invalid_files(text, needle):
    assert needle in str(_err(text))


def test_missing_credential_variable_is_named(tmp_path, monkeypatch):
    p = tmp_path / "fleet.yaml"
    p.write_text(GOOD)
    for v in ("BGQ_ORDERS_ADMIN_PW", "BGQ_ORDERS_REPL_PW", "BGQ_USERS_ADMIN_PW", "BGQ_USERS_REPL_PW"):
        monkeypatch.setenv(v, "x")
    monkeypatch.delenv("BGQ_USERS_REPL_PW")
    f = load_fleet(p)
    with pytest.raises(FleetFileError) as e:
        check_credentials(f, str(p))
    assert e.value.cluster == "users" and e.value.field == "replication.password_env"
    assert "BGQ_USERS_REPL_PW is not set" in str(e.value)


def test_unreadable_file():
    with pytest.raises(FleetFileError, match="cannot read"):
        load_fleet("/nonexistent/fleet.yaml")


def test_unknown_cluster_in_selection():
    from bgqueue.model.errors import BadInput
    with pytest.raises(BadInput, match="unknown cluster 'nope'"):
        parse_fleet(GOOD, "f").select(["nope"])


def test_every_problem_is_listed_typo_first():
    text = GOOD.replace("    green: {host: 10.0.0.4}\n", "    gren: {host: 10.0.0.4}\n").replace("port: 3306}", "port: 0}")
    e = _err(text)
    assert (e.cluster, e.field) == ("users", "gren") and "unknown key" in str(e)
    assert "also: f.yaml:17: cluster 'users': field green: Field required" in str(e)
    assert "also: f.yaml:11: cluster 'orders': field blue.port" in str(e)


def test_the_example_fleet_file_is_valid():
    from pathlib import Path

    f = load_fleet(Path(__file__).resolve().parents[2] / "config" / "fleet.example.yaml")
    assert [c.name for c in f.clusters] == ["orders", "ledger"]
    assert f.cluster("orders").thresholds.max_lag_s == 0.5


RDS = """\
clusters:
  - name: billing
    provider: rds
    region: eu-west-1
    db_instance_identifier: billing-prod
    change: {engine_version: "8.0.36", instance_class: db.r6g.xlarge, parameter_group: billing-80}
    alarms: {prefix: billing-}
    app_config_parameter: /billing/db
"""


def test_rds_cluster_and_its_errors():
    from bgqueue.model.fleet import RdsClusterSpec, cluster_spec

    c = parse_fleet(RDS, "r.yaml").clusters[0]
    assert isinstance(c, RdsClusterSpec) and c.source_identifier == "billing-prod"
    assert cluster_spec(c.model_dump(mode="json")) == c
    e = _err(RDS.replace("db_instance_identifier", "db_instance_identifer"))
    assert e.field == "db_instance_identifer" and e.cluster == "billing" and "unknown key" in str(e)
    e = _err(RDS.replace("    db_instance_identifier: billing-prod\n", ""))
    assert "exactly one of db_instance_identifier and db_cluster_identifier" in str(e)


@pytest.mark.parametrize("text,needle", [
    ("defaults: [1]\nclusters: []\n", "defaults must be a mapping"),
    ("defaults: 5\nclusters: []\n", "defaults must be a mapping"),
    ("tiers: [gold]\nclusters: []\n", "tiers must be a mapping"),
    ("defaults: {thresholds: [1]}\nclusters: []\n", "defaults.thresholds must be a mapping"),
    (GOOD.replace("tier: critical", "tier: [x]"), "tier must be a name"),
    (GOOD.replace("    green: {host: 10.0.0.2}\n", "    green: {host: 10.0.0.2}\n    green: {host: 10.0.0.9}\n"),
     "duplicate key 'green'"),
])
def test_malformed_shapes_are_bad_input_not_crashes(text, needle):
    assert needle in str(_err(text))
