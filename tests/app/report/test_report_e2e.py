"""The batch report of a real batch, checked in headless Chromium.

Two real blue/green pairs switch under continuous writes through real Celery workers while the
sampler process samples them; on one, green then refuses the application's writes and the
monitoring window rolls it back. The report is written from the store alone and opened in
Chromium: every plot must have drawn a line through many points, the switchover (and the
rollback) must be marked on every plot, the page must not ask for anything but itself, and a
screenshot is written for people to look at.
"""
from __future__ import annotations

import struct
import time

import pytest
import yaml

from bgqueue.adapters.metrics.summary import metric_points
from bgqueue.adapters.store import deployments as deps
from bgqueue.app.demo import inject_app_fault
from bgqueue.app.progress import wait_for_batch
from bgqueue.app.report import wait_for_metrics, write_batch_report
from bgqueue.app.report.cluster import PLOTS
from bgqueue.client.workload import start_workload
from bgqueue.model.fleet import load_fleet
from tests.app.report.chromium import Chromium, MissingChromium, find_chromium

# What the page looks like to the browser: per cluster section, each plot's laid-out series.
PROBE = """(() => [...document.querySelectorAll('section.cluster')].map(sec => ({
  cluster: sec.dataset.cluster,
  timeline: [...sec.querySelectorAll('svg.timeline g.marker')].map(g => g.dataset.kind),
  plots: [...sec.querySelectorAll('svg.plot')].map(svg => ({
    id: svg.id, width: svg.getBoundingClientRect().width,
    series: [...svg.querySelectorAll('path.series')].map(p => ({
      key: p.dataset.series, points: (p.getAttribute('d').match(/[ML]/g) || []).length,
      length: p.getTotalLength(), width: p.getBoundingClientRect().width, height: p.getBBox().height})),
    markers: [...svg.querySelectorAll('g.marker')].map(g => ({
      kind: g.dataset.kind, label: g.querySelector('text').textContent,
      height: g.querySelector('line').getBoundingClientRect().height})),
  })),
})))()"""
MIN_POINTS = 6  # ≈ 1 point/s: the shortest deployment here lasts ~8 s from the sampler's first look


def _wait_phase(runtime, dep_id: str, phase: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while deps.get_deployment(runtime.store, dep_id).phase != phase:
        assert time.monotonic() < deadline, deps.get_deployment(runtime.store, dep_id).reason
        time.sleep(0.1)


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_of_a_real_batch_draws_every_plot_in_chromium(cluster_pair_factory, fleet_file, unique_name,
                                                             runtime, celery_workers, sampler_process, redis_url,
                                                             sandbox_passwords, tmp_path):
    try:
        find_chromium()
    except MissingChromium as e:  # never a skip: a report nobody looked at proves nothing
        pytest.fail(str(e), pytrace=False)
    from tasks.batch import enqueue_fleet

    clean, faulty = cluster_pair_factory(unique_name("rpt")), cluster_pair_factory(unique_name("rrb"))
    path = fleet_file([clean, faulty], monitor_window_s=8, monitor_tick_s=0.25, monitor_eval_s=2,
                      rollback_error_rate=5)
    raw = yaml.safe_load(path.read_text())
    raw["clusters"][1]["thresholds"] = {"monitor_window_s": 60}  # room for the fault to be seen
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    specs = load_fleet(path).clusters
    loads = [start_workload(s, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                            rate_hz=150) for s in specs]
    try:
        time.sleep(0.5)
        opened = enqueue_fleet(str(path))
        _wait_phase(runtime, opened.deployments[faulty.name], "MONITORING")
        time.sleep(4.0)  # a few healthy seconds on green first
        inject_app_fault(faulty)
        rows = wait_for_batch(runtime, opened.batch_id, timeout=120)
    finally:
        for w in loads:
            w.stop()
    assert {d.cluster: d.phase for d in rows} == {clean.name: "COMPLETED", faulty.name: "ROLLED_BACK"}, \
        [(d.cluster, d.phase, d.reason) for d in rows]
    assert wait_for_metrics(runtime.store, opened.batch_id, timeout=20), "the sampler did not summarise the last phases"
    faulty_id = opened.deployments[faulty.name]
    assert max(v for _, v in metric_points(runtime.store, faulty_id, "errors_per_s")) > 0  # the fault is in the data

    report = write_batch_report(runtime.store, opened.batch_id, tmp_path / "report.html")
    url = report.as_uri()
    with Chromium(width=1200, height=900) as browser:
        browser.open(url)
        sections = browser.evaluate(PROBE)
        png = browser.screenshot(tmp_path / "report.png")
        requests = list(browser.requests)
    print(f"\nreport: {report}\nscreenshot: {png}")

    assert requests == [url]  # self-contained: the page asked for nothing but itself
    width, height = _png_size(png)
    assert width == 1200 and height > 2000 and png.stat().st_size > 50_000
    assert [s["cluster"] for s in sections] == sorted([clean.name, faulty.name])
    for section in sections:
        expected = ["switchover", "rollback"] if section["cluster"] == faulty.name else ["switchover"]
        assert section["timeline"] == expected
        assert len(section["plots"]) == len(PLOTS)
        for plot in section["plots"]:
            where = f"{section['cluster']} {plot['id']}"
            assert plot["width"] > 300, where
            assert plot["series"], f"{where}: no line drawn"
            for s in plot["series"]:
                # A real line through many points, spread over a good part of the laid-out plot.
                assert s["points"] >= MIN_POINTS and s["length"] > 50, (where, s)
                assert s["width"] > 0.3 * plot["width"], (where, s)
            assert [m["kind"] for m in plot["markers"]] == expected, where
            assert all(m["label"] in ("switchover", "rollback") and m["height"] > 50 for m in plot["markers"]), where
    errors = next(p for p in next(s for s in sections if s["cluster"] == faulty.name)["plots"] if p["id"].endswith("-errors"))
    assert errors["series"][0]["height"] > 10  # the error spike that caused the rollback is drawn
