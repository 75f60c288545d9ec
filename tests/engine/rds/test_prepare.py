"""prepare and the preflight against moto, in this process: support checks before anything is created,
adoption of an existing blue/green deployment instead of a second one, the budget, the parameter diff."""
from __future__ import annotations

import pytest

from bgqueue.adapters.aws import bluegreen
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.rds import RDS_CHECKS
from bgqueue.engine import claims, lifecycle
from bgqueue.engine.batches import open_batch
from bgqueue.engine.rds.preflight import check_rds_cluster
from bgqueue.model.fleet import FleetFileError, cluster_spec
from bgqueue.model.phases import Phase
from tests.engine.rds.helpers import (
    blue_green_of,
    cluster_entry,
    instance,
    moto_client,
    move,
    new_deployment,
    parameter_group,
    unique,
    write_fleet,
)
from tests.fixtures.bgq import bgqueue_cli


def _source(rds, base: str, **kw) -> str:
    name = unique(base)
    parameter_group(rds, f"{name}-pg")
    instance(rds, name, pg=f"{name}-pg", **kw)
    return name


def test_prepare_after_a_crash_resumes_the_blue_green_deployment_it_created(rds, runtime):
    name = _source(rds, "crash")
    entry = cluster_entry(name, instance=name, change={"engine_version": "8.0.36"})
    dep_id = new_deployment(runtime, entry)
    spec = cluster_spec(deps.get_deployment(runtime.store, dep_id).spec)
    # The first prepare created it, then its worker died before recording it anywhere.
    move(runtime, dep_id, Phase.PREPARING)
    arn = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceArn"]
    first = bluegreen.create("us-east-1", name=bluegreen.name_for(name, dep_id), source_arn=arn, params={},
                             tag_values={bluegreen.TAG_DEPLOYMENT: dep_id, bluegreen.TAG_CLUSTER: name,
                                         bluegreen.TAG_CHANGE: spec.change_key()})

    assert lifecycle.prepare(runtime, dep_id).wait_s is None
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.SYNCING, dep.reason
    assert (dep.facts["blue_green"]["id"], dep.facts["blue_green"]["how"]) == (first["BlueGreenDeploymentIdentifier"], "resumed")
    assert len(blue_green_of(rds, name)) == 1

    # That deployment ends FAILED (a human looked); a new one for the same change adopts the green environment.
    claims.fail(runtime, dep_id, "test: the operator gave up on it")
    again = new_deployment(runtime, entry)
    lifecycle.prepare(runtime, again)
    dep = deps.get_deployment(runtime.store, again)
    assert dep.phase == Phase.SYNCING and dep.facts["blue_green"]["how"] == "adopted"
    assert dep.facts["blue_green"]["created_by"] == dep_id and len(blue_green_of(rds, name)) == 1

    # Another change for the same source is refused, and the existing green environment is left alone.
    claims.fail(runtime, again, "test")
    other = new_deployment(runtime, {**entry, "change": {"engine_version": "8.0.40"}})
    lifecycle.prepare(runtime, other)
    dep = deps.get_deployment(runtime.store, other)
    assert dep.phase == Phase.NO_GO and "with another change" in dep.reason and "delete it first" in dep.reason
    assert [bg["Status"] for bg in blue_green_of(rds, name)] == ["AVAILABLE"]
    assert journal.steps(runtime.store, other, "cleanup") == []


def test_a_blue_green_deployment_bgqueue_did_not_create_is_not_adopted(rds, runtime):
    name = _source(rds, "foreign")
    arn = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceArn"]
    rds.create_blue_green_deployment(BlueGreenDeploymentName=f"{name}-by-hand", Source=arn)
    dep_id = new_deployment(runtime, cluster_entry(name, instance=name))
    lifecycle.prepare(runtime, dep_id)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.NO_GO and "was not created by bgqueue" in dep.reason
    assert len(blue_green_of(rds, name)) == 1


def test_unsupported_topologies_are_found_before_anything_is_created(rds, moto_url, runtime, tmp_path):
    cascading = _source(rds, "casc")
    rds.create_db_instance_read_replica(DBInstanceIdentifier=f"{cascading}-r1", SourceDBInstanceIdentifier=cascading)
    rds.create_db_instance_read_replica(DBInstanceIdentifier=f"{cascading}-r2", SourceDBInstanceIdentifier=f"{cascading}-r1")
    secret = unique("secret")
    rds.create_db_instance(DBInstanceIdentifier=secret, Engine="mysql", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="admin", ManageMasterUserPassword=True)
    maz = unique("maz")
    rds.create_db_cluster(DBClusterIdentifier=maz, Engine="mysql", MasterUsername="admin",
                          MasterUserPassword="not-a-secret-1", DBClusterInstanceClass="db.m6gd.large",
                          AllocatedStorage=100, StorageType="io1", Iops=1000)
    proxied = _source(rds, "proxied")
    rds.create_db_proxy(DBProxyName=f"{proxied}-proxy", EngineFamily="MYSQL", RoleArn="arn:aws:iam::123456789012:role/p",
                        Auth=[{"AuthScheme": "SECRETS", "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}],
                        VpcSubnetIds=[n["SubnetId"] for n in moto_client("ec2", moto_url).describe_subnets()["Subnets"][:2]])
    rds.register_db_proxy_targets(DBProxyName=f"{proxied}-proxy", DBInstanceIdentifiers=[proxied])
    expected = {
        cascading: f"cascading read replicas, which blue/green deployments do not support: {cascading}-r1 → {cascading}-r2",
        f"{cascading}-r1": f"is a read replica of {cascading}",
        secret: "master password managed in Secrets Manager",
        maz: "is a Multi-AZ DB cluster",
        proxied: f"is a target of RDS Proxy {proxied}-proxy",
    }
    for ident, needle in expected.items():
        entry = cluster_entry(ident, cluster=ident) if ident == maz else cluster_entry(ident, instance=ident)
        result = check_rds_cluster(cluster_spec(entry))
        assert any(needle in m for _, m in result.problems), (ident, result.problems)
    assert check_rds_cluster(cluster_spec(cluster_entry("missing", instance=unique("missing")))).problems[0][1] \
        .endswith("not found in us-east-1")

    # `fleet run` stops at the preflight: nothing recorded, nothing created, no lock left.
    path = write_fleet(tmp_path / "f.yaml", [cluster_entry(secret, instance=secret)])
    with pytest.raises(FleetFileError, match="Secrets Manager") as e:
        open_batch(runtime, str(path))
    assert e.value.field == "db_instance_identifier" and e.value.cluster == secret
    assert deps.latest_deployment(runtime.store, secret) is None and blue_green_of(rds, secret) == []
    assert runtime.locks.holder(secret) is None

    # And prepare repeats the checks itself (the fleet may have changed since): NO_GO, nothing created.
    dep_id = new_deployment(runtime, cluster_entry(secret, instance=secret))
    lifecycle.prepare(runtime, dep_id)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.NO_GO and "Secrets Manager" in dep.reason and blue_green_of(rds, secret) == []


def test_a_batch_over_budget_exits_2_and_creates_nothing(rds, bgq_env, aws_env, tmp_path, runtime):
    big = [_source(rds, "big", cls="db.r6g.4xlarge") for _ in range(2)]
    path = write_fleet(tmp_path / "f.yaml", [cluster_entry(n, instance=n) for n in big], budget=3.0)
    p = bgqueue_cli("fleet", "run", str(path), env={**bgq_env, **aws_env})
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("budget_per_hour:"))
    assert f"{path}:{line}: field budget_per_hour: " in p.stderr.replace("\n", "")
    assert "would cost about 3.47 USD/h" in p.stderr and "above budget_per_hour 3; nothing was enqueued" in p.stderr
    for n in big:
        assert deps.latest_deployment(runtime.store, n) is None and blue_green_of(rds, n) == []
    c = bgqueue_cli("fleet", "check", str(path), env={**bgq_env, **aws_env})  # fleet check says so too
    assert c.returncode == 2 and "above budget_per_hour 3; nothing was enqueued" in c.stderr, c.stderr
    ok = write_fleet(tmp_path / "ok.yaml", [cluster_entry(n, instance=n) for n in big], budget=4.0)
    c = bgqueue_cli("fleet", "check", str(ok), env={**bgq_env, **aws_env})
    assert "cost estimate: green environments about 3.47 USD/h while they coexist with blue (budget_per_hour 4)" \
        in c.stdout, (c.stdout, c.stderr)
    # Under budget the same fleet passes the check (and the CLI's error names what is unpriced otherwise).
    from bgqueue.adapters.aws.cost import check_budget
    from bgqueue.model.fleet import load_fleet

    fleet = load_fleet(write_fleet(tmp_path / "g.yaml", [cluster_entry(n, instance=n) for n in big], budget=4.0))
    est = check_budget(fleet, fleet.clusters, str(tmp_path / "g.yaml"))
    assert est["green_per_hour"] == pytest.approx(2 * (1.72 + 100 * 0.115 / 730), abs=1e-3)


def test_the_parameter_group_diff_flags_behaviour_changing_values(rds, runtime):
    name = unique("params")
    parameter_group(rds, f"{name}-blue", sql_mode="STRICT_TRANS_TABLES", max_connections=200)
    parameter_group(rds, f"{name}-green", sql_mode="", max_connections=500, time_zone="UTC")
    instance(rds, name, pg=f"{name}-blue")

    def run(change: dict):
        dep_id = new_deployment(runtime, cluster_entry(name, instance=name, change=change))
        facts = {"source": {"parameter_group": f"{name}-blue"}, "green": {"parameter_group": f"{name}-green"}}
        move(runtime, dep_id, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, facts=facts)
        dep = deps.get_deployment(runtime.store, dep_id)
        ctx = CheckContext(spec=cluster_spec(dep.spec), blue=None, green=None, store=runtime.store, deployment_id=dep_id)
        return run_check("rds_parameter_groups", RDS_CHECKS["rds_parameter_groups"], ctx)

    r = run({"parameter_group": f"{name}-green"})
    assert r.status == "fail" and not r.retryable
    assert "sql_mode differs (blue 'STRICT_TRANS_TABLES', green '')" in r.reason
    assert "time_zone differs (blue '(engine default)', green 'UTC')" in r.reason
    assert [d["name"] for d in r.evidence["other"]] == ["max_connections"]
    r = run({"parameter_group": f"{name}-green", "parameters": {"sql_mode": "", "time_zone": "UTC"}})
    assert r.status == "pass", r.reason
    r = run({"parameter_group": f"{name}-green", "parameters": {"sql_mode": "ANSI", "time_zone": "UTC"}})
    assert r.status == "fail" and "sql_mode: the change declares 'ANSI' but green has ''" in r.reason


def test_fleet_check_shows_what_it_found_and_changes_nothing(rds, bgq_env, aws_env, tmp_path):
    name = _source(rds, "check")
    path = write_fleet(tmp_path / "f.yaml", [cluster_entry(name, instance=name)])
    p = bgqueue_cli("fleet", "check", str(path), env={**bgq_env, **aws_env})
    assert p.returncode == 0, p.stderr
    assert f"{name}: ok (engine mysql, version 8.0.35, status available, class db.r6g.large, kind instance)" in p.stdout
    assert blue_green_of(rds, name) == []


def test_the_application_settings_are_updated_once_and_restored_only_if_untouched(rds, moto_url, runtime):
    import json

    from bgqueue.adapters.aws import app_config
    from bgqueue.adapters.aws.clients import AwsError

    ssm = moto_client("ssm", moto_url)
    name = unique("app")
    ssm.put_parameter(Name=f"/{name}/db", Type="SecureString", Value=json.dumps({"host": "h0", "password": "p"}))
    spec = cluster_spec(cluster_entry(name, instance=name, app_config_parameter=f"/{name}/db"))
    rec = app_config.update_at_switchover(spec, "dep-1", host="h1", port=3307, engine_version="8.0.36", blue_green_id="bgd-1")
    assert rec == {"parameter": f"/{name}/db", "previous_version": 1, "version": 2}
    again = app_config.update_at_switchover(spec, "dep-1", host="h1", port=3307, engine_version="8.0.36", blue_green_id="bgd-1")
    assert again["version"] == 2 and again["resumed"]  # a resumed switch step writes nothing twice
    value = json.loads(ssm.get_parameter(Name=f"/{name}/db", WithDecryption=True)["Parameter"]["Value"])
    assert (value["host"], value["port"], value["password"], value["bgqueue"]["deployment"]) == ("h1", 3307, "p", "dep-1")
    assert app_config.restore(spec, rec) == {"parameter": f"/{name}/db", "restored_from": 1, "version": 3}
    assert json.loads(ssm.get_parameter(Name=f"/{name}/db", WithDecryption=True)["Parameter"]["Value"]) == \
        {"host": "h0", "password": "p"}
    with pytest.raises(AwsError, match="changed since the switchover, not restored"):
        app_config.restore(spec, rec)  # version 3 is not bgqueue's version 2 any more


def test_alarms_in_alarm_reads_the_selection_by_prefix_and_tag(rds, moto_url):
    from bgqueue.checks.rds import alarms_in_alarm

    cw = moto_client("cloudwatch", moto_url)
    name = unique("mon")
    for alarm, tags in ((f"{name}-cpu", [{"Key": "team", "Value": "db"}]), (f"{name}-disk", []),
                        (f"other-{name}", [{"Key": "team", "Value": "db"}])):
        cw.put_metric_alarm(AlarmName=alarm, MetricName="CPUUtilization", Namespace="AWS/RDS", Statistic="Average",
                            Period=60, EvaluationPeriods=1, Threshold=90, ComparisonOperator="GreaterThanThreshold",
                            Tags=tags)
        cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")
    by = lambda **alarms: cluster_spec(cluster_entry(name, instance=name, alarms=alarms))  # noqa: E731
    assert alarms_in_alarm(by(prefix=f"{name}-")) == (f"{name}-cpu", f"{name}-disk")
    assert f"other-{name}" in alarms_in_alarm(by(tag={"team": "db"}))
    assert alarms_in_alarm(by(prefix=f"{name}-", tag={"team": "db"})) == (f"{name}-cpu",)
    cw.set_alarm_state(AlarmName=f"{name}-cpu", StateValue="OK", StateReason="test")
    assert alarms_in_alarm(by(prefix=f"{name}-", tag={"team": "db"})) == ()
    assert alarms_in_alarm(by()) == ()


def test_a_light_round_out_of_time_records_the_checks_it_did_not_run_and_waits(rds, runtime):
    """A round of light checks runs in one task: past its budget the checks not started yet are
    retryable errors, so the round is still decided (WAIT here) instead of outliving its task."""
    import time

    from bgqueue.engine import validation

    name = unique("budget")
    parameter_group(rds, f"{name}-pg")
    instance(rds, name, pg=f"{name}-pg")
    dep_id = new_deployment(runtime, cluster_entry(name, instance=name, change={"engine_version": "8.0.36"}))
    move(runtime, dep_id, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, facts={})
    names = validation.begin(runtime, dep_id)
    results = validation.run_named_checks(runtime, dep_id, names, deadline=time.monotonic() - 1)
    assert [r["name"] for r in results] == names
    assert {(r["status"], r["retryable"]) for r in results} == {("error", True)}
    assert "not run: the round's time ran out" in results[0]["reason"]
    assert validation.conclude(runtime, dep_id, results).verdict == "WAIT"
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.VALIDATING
    lifecycle.end(runtime, deps.claim(runtime.store, dep_id, "test", [Phase.VALIDATING]), Phase.NO_GO, "test over")
