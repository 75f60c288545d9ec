"""MetricsStore against the session's real redis-server."""
import time

import pytest
import redis

from bgqueue.adapters.metrics.samples import MetricsStore


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_append_then_read_back_by_window_range_series_and_latest(r, unique_name):
    ms = MetricsStore(r)
    c = unique_name("ms")
    t = 1_700_000_000.0
    for i in range(10):
        ms.append(c, t + i * 0.25, {"lag_ms": float(i), "qps": 100.0 + i} if i != 4 else {"qps": 104.0})
    assert ms.latest(c).ts == t + 9 * 0.25 and ms.latest(c).values == {"lag_ms": 9.0, "qps": 109.0}
    win = ms.window(c, 1.0, now=t + 2.25)  # ts in [t+1.25, t+2.25]
    assert [s.ts for s in win] == [t + i * 0.25 for i in range(5, 10)]
    rng = ms.range(c, t + 0.5, t + 1.5)
    assert [s.ts for s in rng] == [t + 0.5, t + 0.75, t + 1.0, t + 1.25, t + 1.5]
    # A sample without the metric is left out of its series.
    assert ms.series(c, "lag_ms", t, t + 1.5) == [(t + i * 0.25, float(i)) for i in (0, 1, 2, 3, 5, 6)]
    assert ms.latest(unique_name("none")) is None
    assert ms.window(c, 10.0) == []  # "now" defaults to this host's clock: these samples are old


def test_samples_in_the_same_millisecond_or_out_of_order_are_all_kept(r, unique_name):
    ms, c = MetricsStore(r), unique_name("ms")
    t = 1_700_000_100.0
    ms.append(c, t, {"v": 1})
    ms.append(c, t, {"v": 2})
    ms.append(c, t - 5, {"v": 3})  # a clock step back: stored after, under the previous id
    assert [s.values["v"] for s in ms.range(c, t - 10, t + 1)] == [1.0, 2.0, 3.0]
    assert ms.latest(c).ts == t - 5
    # A second process continues after what the stream holds, instead of failing on lower ids.
    other = MetricsStore(r)
    other.append(c, t - 1, {"v": 4})
    assert ms.length(c) == 4 and other.latest(c).values == {"v": 4.0}
    # The first process's next id was taken by the other: that sample is dropped, the next is kept.
    ms.append(c, t, {"v": 5})
    assert ms.length(c) == 4
    ms.append(c, t, {"v": 6})
    assert ms.length(c) == 5 and ms.latest(c).values == {"v": 6.0}


def test_one_pipeline_for_many_clusters(r, unique_name):
    ms = MetricsStore(r)
    names = [unique_name("mp") for _ in range(5)]
    ms.append_many([(n, 1_700_000_200.0, {"x": i}) for i, n in enumerate(names)])  # first: reads last ids
    before = ms.commands_sent
    sent = ms.append_many([(n, 1_700_000_201.0, {"x": i}) for i, n in enumerate(names)])
    assert sent == 5 == ms.commands_sent - before  # one XADD per cluster, no TTL refresh this time
    assert [ms.latest(n).values["x"] for n in names] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_retention_is_bounded_by_length_and_by_ttl(r, unique_name):
    ms, c = MetricsStore(r, maxlen=200, ttl_s=30), unique_name("ret")
    t = time.time()
    ms.append_many([(c, t + i * 0.001, {"i": i}) for i in range(2000)])
    # Approximate trimming works in whole stream nodes (100 entries by default).
    assert 200 <= ms.length(c) <= 300
    assert ms.latest(c).values["i"] == 1999.0  # the newest are kept
    assert 0 < r.ttl(ms.key(c)) <= 30
