"""Routing targets flipped with the registry: a real HAProxy in front of the pair (plain PyMySQL
applications through it follow the switchover and the rollback), a Route 53 record and an SSM
parameter on a moto server; readiness gates validation (a DNS TTL above its bound is a NO_GO
with the figure); a target that does not exist is bad input at `fleet check`."""
from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pymysql
import pytest
import yaml
from moto.server import ThreadedMotoServer

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.routing.haproxy import HAProxyRuntime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.engine import lifecycle, rollback
from bgqueue.engine.batches import open_batch
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.sandbox import APP_DATABASE, APP_USER, free_port
from bgqueue.sandbox.haproxy import Backend, BackendServer, HAProxyServer, create_check_user
from tests.engine.mysql.test_switchover_resume import _drive_to_ready
from tests.fixtures.bgq import bgqueue_cli

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_env() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    values = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
              "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, aws.RETRIES_ENV: "0"}
    mp = pytest.MonkeyPatch()
    for k, v in values.items():
        mp.setenv(k, v)
    aws.reset()
    yield values
    mp.undo()
    aws.reset()
    server.stop()


def _client(service: str, env: dict[str, str]):
    return boto3.client(service, region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _with_routing(path, targets: list[dict]):
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["routing"] = targets
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _proxy(tmp_path, pair) -> HAProxyServer:
    for server in (pair.blue, pair.green):
        create_check_user(server)
    # Green in drain before the switchover: no new connections, its health checks running.
    backend = Backend("writer", (BackendServer("blue", pair.blue.host, pair.blue.port),
                                 BackendServer("green", pair.green.host, pair.green.port, state="drain")))
    return HAProxyServer(tmp_path / "haproxy", backend, admin="unix").start()


def _answering_port(proxy: HAProxyServer, sandbox_passwords) -> int:
    """Which server a new plain-PyMySQL connection through HAProxy reaches (no bgqueue code)."""
    conn = pymysql.connect(host="127.0.0.1", port=proxy.frontend_port("writer"), user=APP_USER,
                           password=sandbox_passwords.app, database=APP_DATABASE, ssl_disabled=True,
                           connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@port")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_switchover_and_rollback_flip_haproxy_route53_and_ssm_with_the_registry(
        cluster_pair_factory, fleet_file, unique_name, runtime, tmp_path, moto_env, sandbox_passwords,
        sampler_process):
    pair = cluster_pair_factory(unique_name("route"))
    proxy = _proxy(tmp_path, pair)
    r53, ssm = _client("route53", moto_env), _client("ssm", moto_env)
    zone = r53.create_hosted_zone(Name="db.internal.", CallerReference=unique_name("z"))["HostedZone"]["Id"]
    zone_id = zone.split("/")[-1]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "writer.db.internal.", "Type": "CNAME", "TTL": 5,
                              "ResourceRecords": [{"Value": "blue.db.internal."}]}}]})
    ssm.put_parameter(Name="/app/db/writer", Type="String", Overwrite=True,
                      Value=json.dumps({"host": pair.blue.host, "port": pair.blue.port, "database": "appdb"}))
    try:
        path = _with_routing(fleet_file([pair]), [
            {"kind": "haproxy", "admin": proxy.admin_address, "backend": "writer", "blue_server": "blue",
             "green_server": "green"},
            {"kind": "route53", "zone_id": zone_id, "record": "writer.db.internal.", "type": "CNAME",
             "blue_value": "blue.db.internal.", "green_value": "green.db.internal."},
            {"kind": "ssm", "parameter": "/app/db/writer", "region": REGION}])
        spec = load_fleet(path).clusters[0]
        assert _answering_port(proxy, sandbox_passwords) == pair.blue.port
        dep_id = open_batch(runtime, str(path)).deployments[spec.name]
        _drive_to_ready(runtime, dep_id)  # the routing readiness check passed among the others
        lifecycle.switch(runtime, dep_id)
        dep = deps.get_deployment(runtime.store, dep_id)
        assert dep.phase == Phase.CDC_MIGRATING and not dep.reason, dep.reason
        assert _answering_port(proxy, sandbox_passwords) == pair.green.port
        record = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        assert [r["ResourceRecords"][0]["Value"] for r in record if r["Type"] == "CNAME"] == ["green.db.internal."]
        settings = json.loads(ssm.get_parameter(Name="/app/db/writer")["Parameter"]["Value"])
        assert (settings["port"], settings["database"]) == (pair.green.port, "appdb")
        flips = [s for s in journal.steps(runtime.store, dep_id, "switchover") if s.name == "flip_targets"]
        assert flips[0].status == "done" and len(flips[0].detail["flipped"]) == 3, flips[0].detail
        r53_flip = next(v for k, v in flips[0].detail["flipped"].items() if k.startswith("route53"))
        assert r53_flip["status"] == "INSYNC", r53_flip  # the flip waited for Route 53 to apply it

        assert rollback.roll_back(runtime, dep_id, "test: back").wait_s is None
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.ROLLED_BACK
        assert _answering_port(proxy, sandbox_passwords) == pair.blue.port
        settings = json.loads(ssm.get_parameter(Name="/app/db/writer")["Parameter"]["Value"])
        assert settings["port"] == pair.blue.port
    finally:
        proxy.stop()


def test_a_dns_ttl_above_its_bound_is_a_no_go_with_the_figure(cluster_pair_factory, fleet_file, unique_name,
                                                              runtime, moto_env, sampler_process):
    pair = cluster_pair_factory(unique_name("ttl"))
    r53 = _client("route53", moto_env)
    zone_id = r53.create_hosted_zone(Name="ttl.internal.", CallerReference=unique_name("z"))["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "w.ttl.internal.", "Type": "CNAME", "TTL": 300,
                              "ResourceRecords": [{"Value": "blue.ttl.internal."}]}}]})
    path = _with_routing(fleet_file([pair]), [
        {"kind": "route53", "zone_id": zone_id, "record": "w.ttl.internal.", "blue_value": "blue.ttl.internal.",
         "green_value": "green.ttl.internal."}])
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    with pytest.raises(AssertionError):
        _drive_to_ready(runtime, dep_id)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.NO_GO
    assert "TTL 300s is above 5s" in dep.reason
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0  # nothing was fenced


def test_a_target_that_does_not_exist_is_bad_input_at_fleet_check(cluster_pair_factory, fleet_file, unique_name,
                                                                    bgq_env, tmp_path):
    pair = cluster_pair_factory(unique_name("badtarget"))
    path = _with_routing(fleet_file([pair]), [
        {"kind": "haproxy", "admin": f"unix:{tmp_path}/nowhere.sock", "backend": "writer", "blue_server": "blue",
         "green_server": "green"}])
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(path) in r.stderr and pair.name in r.stderr and "routing" in r.stderr
    assert "nowhere.sock" in r.stderr


def test_a_target_that_fails_after_promotion_leaves_green_promoted_and_status_names_the_path(
        cluster_pair_factory, fleet_file, unique_name, runtime, tmp_path, sampler_process, bgq_env):
    pair = cluster_pair_factory(unique_name("lostproxy"))
    proxy = _proxy(tmp_path, pair)
    try:
        path = _with_routing(fleet_file([pair]), [
            {"kind": "haproxy", "admin": proxy.admin_address, "backend": "writer", "blue_server": "blue",
             "green_server": "green"}])
        spec = load_fleet(path).clusters[0]
        opened = open_batch(runtime, str(path))
        dep_id = opened.deployments[spec.name]
        _drive_to_ready(runtime, dep_id)
    finally:
        proxy.stop()  # the proxy's admin socket goes away between validation and the switchover
    lifecycle.switch(runtime, dep_id)
    dep = deps.get_deployment(runtime.store, dep_id)
    # Past the point of no return nothing is undone: green is the writer, the registry follows it.
    assert dep.phase == Phase.CDC_MIGRATING, dep.reason
    assert "1 application path(s) still point at" in dep.reason and "haproxy" in dep.reason, dep.reason
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0
    flips = [s for s in journal.steps(runtime.store, dep_id, "switchover") if s.name == "flip_targets"]
    assert flips and list(flips[-1].detail["failed"]) == [f"haproxy {proxy.admin_address} writer"]
    r = bgqueue_cli("status", spec.name, "--json", env=bgq_env)
    assert r.returncode == 0, r.stderr
    paths = {p["path"]: p for p in json.loads(r.stdout)["paths"]}
    assert paths["registry"] == {"path": "registry", "points_at": f"{pair.green.host}:{pair.green.port}", "ok": True}
    haproxy = paths[f"haproxy {proxy.admin_address} writer"]
    assert haproxy["ok"] is False and haproxy["points_at"] == "blue (old primary)" and haproxy["error"]
    text = bgqueue_cli("status", spec.name, env=bgq_env)
    assert "STILL ON THE OLD PRIMARY" in text.stdout, text.stdout
    from bgqueue.app.report import render_batch_report

    html = render_batch_report(runtime.store, opened.batch_id)
    assert f'<li class="bad"><b>haproxy {proxy.admin_address} writer</b> → blue (old primary): ' in html


@pytest.mark.parametrize("wrong", ["backend", "server", "zone"])
def test_a_backend_server_or_zone_that_does_not_exist_is_bad_input_naming_it(
        cluster_pair_factory, fleet_file, unique_name, bgq_env, moto_env, tmp_path, sandbox_passwords, wrong):
    pair = cluster_pair_factory(unique_name(f"bad{wrong}"))
    proxy = _proxy(tmp_path, pair)
    try:
        haproxy = {"kind": "haproxy", "admin": proxy.admin_address, "backend": "writer", "blue_server": "blue",
                   "green_server": "green"}
        if wrong == "backend":
            target, named = {**haproxy, "backend": "no_such_backend"}, "no_such_backend"
        elif wrong == "server":
            target, named = {**haproxy, "green_server": "no_such_server"}, "no_such_server"
        else:
            target, named = {"kind": "route53", "zone_id": "ZNOSUCHZONE1", "record": "w.db.internal.",
                             "blue_value": "b.db.internal.", "green_value": "g.db.internal."}, "ZNOSUCHZONE1"
        path = _with_routing(fleet_file([pair]), [target])
        def admin_states():
            return [(x.name, x.admin_state, x.weight) for x in HAProxyRuntime(proxy.admin_address).servers("writer")
                    .values()]

        before = admin_states()
        r = bgqueue_cli("fleet", "check", str(path), env={**bgq_env, **moto_env})
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert str(path) in r.stderr and pair.name in r.stderr and "routing.0" in r.stderr, r.stderr
        assert named in r.stderr, r.stderr
        assert admin_states() == before  # nothing changed
        assert _answering_port(proxy, sandbox_passwords) == pair.blue.port
    finally:
        proxy.stop()
