"""The fleet file's replay section and declared differences: bounds, errors naming the field."""
from __future__ import annotations

import pytest

from bgqueue.model.fleet import Change, FleetFileError, change_key, parse_fleet

BASE = """\
clusters:
  - name: orders
    provider: mysql
    blue: {host: 10.0.0.1}
    green: {host: 10.0.0.2}
    admin: {user: a, password_env: BGQ_A}
    replication: {user: r, password_env: BGQ_R}
"""


def _parse(extra: str):
    return parse_fleet(BASE + extra, "f.yaml")


def test_replay_section_and_declared_differences():
    f = _parse("    replay: {source: slow_log, max_classes: 50, concurrency: 4}\n"
               "    change:\n      replay_differences:\n"
               "        - {fingerprint: 'SELECT a FROM t GROUP BY b', reason: 'ONLY_FULL_GROUP_BY on purpose'}\n")
    c = f.clusters[0]
    assert c.replay.source == "slow_log" and c.replay.path is None and c.replay.max_classes == 50
    assert c.replay.samples_per_class == 5 and c.replay.max_query_time_s == 2.0
    assert c.change.replay_differences[0].reason == "ONLY_FULL_GROUP_BY on purpose"
    assert _parse("").clusters[0].replay is None


def test_declaring_nothing_keeps_every_existing_change_key():
    # Sign-offs are stored per change key: an empty list must not change the key of any change.
    assert change_key(Change()) == change_key(Change.model_validate({"replay_differences": []}))
    assert change_key(Change()) != change_key(Change.model_validate(
        {"replay_differences": [{"fingerprint": "select ?", "reason": "x"}]}))


@pytest.mark.parametrize("replay, field, message", [
    ("{source: binlog}", "replay.source", "Input should be"),
    ("{source: file}", "replay", "source: file needs a path"),
    ("{source: digest, path: /x}", "replay", "takes no path"),
    ("{source: slow_log, format: sql}", "replay", "format applies to source: file only"),
    ("{source: slow_log, concurrency: 100}", "replay.concurrency", "less than or equal to 16"),
    ("{source: slow_log, max_query_time_s: .inf}", "replay.max_query_time_s", "finite"),
    ("{source: slow_log, latency_ratio: 1}", "replay.latency_ratio", "greater than 1"),
    ("{source: slow_log, typo: 1}", "replay.typo", "unknown key"),
])
def test_bad_replay_section_names_file_cluster_and_field(replay, field, message):
    with pytest.raises(FleetFileError) as e:
        _parse(f"    replay: {replay}\n")
    assert e.value.cluster == "orders" and e.value.field == field and e.value.path == "f.yaml"
    assert message in str(e.value), str(e.value)


def test_declared_difference_needs_a_reason():
    with pytest.raises(FleetFileError) as e:
        _parse("    change: {replay_differences: [{fingerprint: 'select 1'}]}\n")
    assert e.value.field == "change.replay_differences.0.reason"
