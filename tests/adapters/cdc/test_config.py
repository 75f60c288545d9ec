"""Pipelines in the fleet file: the three kinds, their defaults, and errors that name the field."""
from __future__ import annotations

import pytest
import yaml

from bgqueue.model.cdc import BinlogPipeline, DebeziumPipeline, DmsPipeline
from bgqueue.model.fleet import FleetFileError, parse_fleet

CLUSTER = {"name": "orders", "provider": "mysql", "blue": {"host": "10.0.0.1"}, "green": {"host": "10.0.0.2"},
           "admin": {"user": "a", "password_env": "BGQ_A_PW"}, "replication": {"user": "r", "password_env": "BGQ_R_PW"}}


def fleet(pipelines) -> str:
    return yaml.safe_dump({"version": 1, "clusters": [dict(CLUSTER, pipelines=pipelines)]}, sort_keys=False)


def test_three_kinds_with_defaults():
    spec = parse_fleet(fleet([
        {"kind": "binlog", "name": "app", "tables": ["shop.orders"], "user": {"user": "cdc", "password_env": "BGQ_C"}},
        {"kind": "dms", "name": "dms", "task_arn": "arn:aws:dms:eu-west-1:123456789012:task:ABC", "region": "eu-west-1"},
        {"kind": "debezium", "name": "dbz", "connect_url": "http://connect:8083", "connector": "orders",
         "topic_prefix": "orders"},
    ])).clusters[0]
    binlog, dms, dbz = spec.pipelines
    assert isinstance(binlog, BinlogPipeline) and isinstance(dms, DmsPipeline) and isinstance(dbz, DebeziumPipeline)
    assert binlog.stream_key("orders") == "bgq:cdc:orders:app" and binlog.start == "current"
    assert binlog.schema_tables() == {("shop", "orders")}
    # A stable replica id per (cluster, pipeline), clear of the small ids servers use.
    assert binlog.client_server_id("orders") == binlog.client_server_id("orders") != binlog.client_server_id("other")
    assert binlog.client_server_id("orders") > 0x70000000
    assert dms.repoint_endpoint and dbz.repoint
    assert ("pipelines.0.user", binlog.user) in spec.credential_envs()


@pytest.mark.parametrize("pipeline,field", [
    ({"kind": "binlog", "name": "app", "tables": ["no_schema"]}, "pipelines.0.binlog.tables.0"),
    ({"kind": "binlog", "name": "app", "tables": ["a.b"], "tabels": []}, "pipelines.0.binlog.tabels"),
    ({"kind": "dms", "name": "d", "task_arn": "task-1"}, "pipelines.0.dms.task_arn"),
    ({"kind": "kafka", "name": "k"}, "pipelines.0"),
])
def test_bad_pipelines_are_located(pipeline, field):
    with pytest.raises(FleetFileError) as e:
        parse_fleet(fleet([pipeline]), "fleet.yaml")
    assert e.value.cluster == "orders" and e.value.field == field, str(e.value)
