"""Describing many sources at once (``describe_specs``, used by the preflight and the budget check):
the same outcome per cluster as describing each alone, in a few calls."""
from __future__ import annotations

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.source import SourceMissing, describe_spec, describe_specs
from bgqueue.model.fleet import load_fleet
from tests.engine.rds.helpers import aurora, cluster_entry, instance, parameter_group, unique, write_fleet


def _count_calls(client, fn):
    """``(fn(), [operation names the client sent meanwhile])``."""
    seen: list[str] = []

    def note(model=None, **_):
        seen.append(model.name)

    client.meta.events.register("before-call", note)
    try:
        return fn(), seen
    finally:
        client.meta.events.unregister("before-call", note)


def test_many_sources_are_described_in_a_few_calls_with_the_outcome_of_one_by_one(rds, aws_env, tmp_path):
    names = [unique("bulk") for _ in range(3)]
    parameter_group(rds, f"{names[0]}-pg")
    for n in names:
        instance(rds, n, pg=f"{names[0]}-pg")
    aur = unique("bulkaur")
    parameter_group(rds, f"{aur}-c", family="aurora-mysql8.0", cluster=True)
    parameter_group(rds, f"{aur}-i", family="aurora-mysql8.0")
    aurora(rds, aur, cpg=f"{aur}-c", pg=f"{aur}-i")
    arn = rds.describe_db_instances(DBInstanceIdentifier=names[2])["DBInstances"][0]["DBInstanceArn"]
    missing = unique("absent")
    fleet = load_fleet(write_fleet(tmp_path / "f.yaml", [
        cluster_entry("a", instance=names[0]), cluster_entry("b", instance=names[1]),
        cluster_entry("by-arn", instance=arn),  # not returned under that name by the bulk call: described alone
        cluster_entry("aur", cluster=aur), cluster_entry("gone", instance=missing)]))
    out, seen = _count_calls(aws.client("rds", "us-east-1"), lambda: describe_specs(fleet.clusters))

    for spec in fleet.clusters:
        if spec.name == "gone":
            assert isinstance(out["gone"], SourceMissing) and repr(missing) in str(out["gone"])
            continue
        assert out[spec.name] == describe_spec(spec), spec.name
    assert out["aur"].kind == "cluster" and out["aur"].members and out["aur"].writer is not None
    assert out["by-arn"].identifier == names[2]
    # The four instances in one filtered call, then alone the two it did not return (by ARN, missing);
    # the cluster and its members in two.
    assert seen == ["DescribeDBInstances"] * 3 + ["DescribeDBClusters", "DescribeDBInstances"], seen


def test_a_bulk_call_that_fails_falls_back_to_one_call_per_source(rds, aws_env, tmp_path):
    """An IAM policy may allow describing named instances only: the filtered call is refused, each
    source is then described alone."""
    from botocore.stub import Stubber

    n = unique("denied")
    parameter_group(rds, f"{n}-pg")
    instance(rds, n, pg=f"{n}-pg")
    fleet = load_fleet(write_fleet(tmp_path / "f.yaml", [cluster_entry("x", instance=n)]))
    real = rds.describe_db_instances(DBInstanceIdentifier=n)
    client = aws.client("rds", "us-east-1")
    with aws.installed("rds", "us-east-1", client), Stubber(client) as stub:
        stub.add_client_error("describe_db_instances", service_error_code="AccessDenied", http_status_code=403)
        stub.add_response("describe_db_instances", {"DBInstances": real["DBInstances"]},
                          {"DBInstanceIdentifier": n})
        out = describe_specs(fleet.clusters)
        stub.assert_no_pending_responses()
    assert out["x"].identifier == n and out["x"].arn == real["DBInstances"][0]["DBInstanceArn"]
