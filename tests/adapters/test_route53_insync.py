"""A Route 53 flip waits until the change is INSYNC, bounded (botocore Stubber: moto applies every
change at once, so it never answers PENDING)."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from bgqueue.adapters.routing import targets
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.routing import Route53Target

TARGET = {"kind": "route53", "zone_id": "Z1", "record": "w.db.internal.", "blue_value": "blue.db.internal.",
          "green_value": "green.db.internal.", "insync_timeout_s": 1.0}


@pytest.fixture
def spec() -> ClusterSpec:
    return ClusterSpec.model_validate({
        "name": "c1", "provider": "mysql",
        "blue": {"host": "127.0.0.1", "port": 3306}, "green": {"host": "127.0.0.2", "port": 3306},
        "admin": {"user": "root", "password_env": "BGQ_ADMIN_PW"},
        "replication": {"user": "repl", "password_env": "BGQ_REPL_PW"},
        "routing": [TARGET]})


@pytest.fixture
def r53(monkeypatch):
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    monkeypatch.setattr(targets.aws, "client", lambda service, region=None: client)
    with stub:
        yield stub


def _change(status: str) -> dict:
    return {"ChangeInfo": {"Id": "/change/C1", "Status": status, "SubmittedAt": "2026-12-02T00:00:00Z"}}


def test_the_flip_polls_get_change_until_insync(spec, r53):
    r53.add_response("change_resource_record_sets", _change("PENDING"))
    r53.add_response("get_change", _change("PENDING"), {"Id": "/change/C1"})
    r53.add_response("get_change", _change("INSYNC"), {"Id": "/change/C1"})
    out = targets.flip(spec, Route53Target.model_validate(TARGET), "green")
    assert out == {"value": "green.db.internal.", "change": "/change/C1", "status": "INSYNC"}


def test_a_change_that_stays_pending_is_a_target_error_naming_it(spec, r53):
    r53.add_response("change_resource_record_sets", _change("PENDING"))
    # 1 s of bounded wait polls at 0.1, 0.2, 0.4 s (then 0.8 s is past the deadline): 4 reads at most
    for _ in range(4):
        r53.add_response("get_change", _change("PENDING"), {"Id": "/change/C1"})
    with pytest.raises(targets.TargetError, match=r"route53 Z1 w\.db\.internal\.: change /change/C1 still PENDING"):
        targets.flip(spec, Route53Target.model_validate(TARGET), "green")
