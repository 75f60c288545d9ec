"""Which clusters a sampler samples: the store's in-flight deployments, a fixed list, shards."""
import pytest

from bgqueue.adapters.metrics.targets import TargetSource, in_shard, parse_shard, shard_of
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.db import Store
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase


def spec(name: str, port: int = 10) -> dict:
    return {"name": name, "provider": "mysql", "blue": {"host": "h", "port": port},
            "green": {"host": "h", "port": port + 1}, "admin": {"user": "a", "password_env": "A"},
            "replication": {"user": "r", "password_env": "R"}, "tls": "disabled"}


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.dispose()


def end(store, dep_id: str) -> None:
    claim = deps.claim(store, dep_id, "t", [Phase.PENDING])
    deps.transition(store, claim, Phase.NO_GO, reason="test")


def test_store_targets_are_the_non_terminal_deployments(store):
    _, ids = deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x",
                               clusters=[spec("a"), spec("b"), spec("c")])
    source = TargetSource(store)
    assert [(t.name, t.deployment_id, t.phase) for t in source.load()] == [
        ("a", ids["a"], "PENDING"), ("b", ids["b"], "PENDING"), ("c", ids["c"], "PENDING")]
    end(store, ids["b"])
    claim = deps.claim(store, ids["c"], "t", [Phase.PENDING])
    deps.transition(store, claim, Phase.PREPARING)
    targets = source.load()
    assert [(t.name, t.phase) for t in targets] == [("a", "PENDING"), ("c", "PREPARING")]
    assert targets[0].spec == ClusterSpec.model_validate(spec("a"))
    # A newer batch for the same cluster: its deployment (and its spec) is the one followed.
    _, ids2 = deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="y", clusters=[spec("a", 20)])
    end(store, ids["a"])
    a = [t for t in source.load() if t.name == "a"]
    assert len(a) == 1 and a[0].deployment_id == ids2["a"] and a[0].spec.blue.port == 20


def test_a_stored_spec_that_no_longer_validates_is_skipped(store):
    bad = dict(spec("bad"), surprise=1)
    deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=[bad, spec("good")])
    assert [t.name for t in TargetSource(store).load()] == ["good"]


def test_a_fixed_list_is_joined_with_the_store_for_phases(store):
    _, ids = deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=[spec("a")])
    deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=[spec("z")])
    fixed = [ClusterSpec.model_validate(spec("a")), ClusterSpec.model_validate(spec("b"))]
    targets = TargetSource(store, clusters=fixed).load()
    assert [(t.name, t.deployment_id, t.phase) for t in targets] == [("a", ids["a"], "PENDING"), ("b", None, None)]
    assert [t.name for t in TargetSource(clusters=fixed).load()] == ["a", "b"]


def test_shards_partition_the_clusters_stably(store):
    names = [f"c{i:03d}" for i in range(40)]
    deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=[spec(n) for n in names])
    shards = [{t.name for t in TargetSource(store, shard=(i, 3)).load()} for i in range(3)]
    assert set().union(*shards) == set(names) and sum(len(s) for s in shards) == len(names)
    assert all(len(s) >= 5 for s in shards)  # crc32 spreads them
    assert shard_of("c001", 3) == shard_of("c001", 3) and in_shard("c001", None)
    # Fixed lists shard the same way.
    fixed = [ClusterSpec.model_validate(spec(n)) for n in names]
    assert {t.name for t in TargetSource(clusters=fixed, shard=(1, 3)).load()} == shards[1]


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None and parse_shard((0, 1)) == (0, 1)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(BadInput):
            parse_shard(bad)
