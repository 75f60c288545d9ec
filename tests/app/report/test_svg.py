"""The report's drawing primitives: ticks, labels, path data with gaps, plots and the timeline."""
import re

from bgqueue.app.report.svg import (
    Bar,
    Event,
    Series,
    Tick,
    fmt_rel,
    fmt_value,
    line_plot,
    nice_ticks,
    path_d,
    phase_timeline,
    time_ticks,
)


def test_ticks_are_round_and_time_ticks_include_zero():
    assert nice_ticks(0, 5.6, 4) == [0, 2, 4]
    assert nice_ticks(0, 0.9, 4) == [0, 0.5] and nice_ticks(0, 0.9, 8) == [0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(3, 3) == [3]
    ticks, step = time_ticks(-3.2, 8.1)
    assert step == 2 and ticks == [-2, 0, 2, 4, 6, 8]
    ticks, step = time_ticks(-700, 2000)
    assert step == 600 and 0 in ticks
    assert [fmt_rel(0, 2), fmt_rel(-30, 10), fmt_rel(120, 60), fmt_rel(0.5, 0.5), fmt_rel(5400, 3600)] == \
        ["0", "\u221230 s", "+2 min", "+0.5 s", "+1.5 h"]
    assert [fmt_value(0), fmt_value(0.25), fmt_value(12), fmt_value(15000), fmt_value(2e6)] == \
        ["0", "0.25", "12", "15k", "2M"]


def test_path_breaks_where_samples_are_missing():
    d, n = path_d([(0, 1), (1, 2), (2, 3), (10, 4), (11, 5)], lambda x: x * 10, lambda y: 100 - y, gap=3.5)
    assert n == 5
    assert d == "M0.0,99.0 L10.0,98.0 L20.0,97.0 M100.0,96.0 L110.0,95.0"


def _attr(svg: str, cls: str, name: str) -> list[str]:
    return re.findall(rf'<[a-z]+ [^>]*class="{cls}"[^>]*?{name}="([^"]*)"', svg)


def test_line_plot_draws_each_series_marks_events_and_escapes_labels():
    pts = [(x * 0.5, float(x % 7)) for x in range(-20, 41)]  # −10 s … +20 s
    svg = line_plot("p1", "Lag <b>", "ms", [Series("lag_ms", "lag", "#123456", pts),
                                            Series("other", "other", "#654321", [(-50.0, 1.0)])],
                    [Event("switchover", "switchover", 0.0, band_from=-0.2),
                     Event("rollback", "rollback <x>", 0.1, band_from=0.05)], (-10.5, 20.5))
    assert svg.startswith('<svg id="p1" class="plot"') and svg.endswith("</svg>")
    assert 'aria-label="Lag &lt;b&gt;"' in svg and "rollback &lt;x&gt;" in svg and "<b>" not in svg
    # Only the series with points inside the range is drawn, with every one of its points.
    assert _attr(svg, "series", "data-series") == ["lag_ms"]
    assert _attr(svg, "series", "data-points") == ["61"]
    d = _attr(svg, "series", "d")[0]
    assert d.count("M") == 1 and d.count("L") == 60
    assert re.findall(r'class="marker" data-kind="(\w+)"', svg) == ["switchover", "rollback"]
    assert svg.count('class="band"') == 2
    # Two events 0.1 s apart: their labels go on different rows instead of overlapping.
    ys = [float(y) for y in re.findall(r'<text x="[^"]+" y="([^"]+)" text-anchor="\w+" fill="#[0-9a-f]+" '
                                      r'class="marker-label"', svg)]
    assert len(ys) == 2 and ys[0] != ys[1]


def test_a_plot_without_points_says_so():
    svg = line_plot("p2", "Errors", "errors/s", [Series("errors_per_s", "errors", "#f00", [])], [], (0, 10))
    assert "no samples recorded in this interval" in svg and 'class="series"' not in svg


def test_timeline_has_a_row_per_phase_a_moment_for_the_end_and_decision_ticks():
    svg = phase_timeline([Bar("VALIDATING", -4, -0.2, "#a78bfa", "3.8 s"), Bar("SWITCHING", -0.2, 0.1, "#f97316", "300 ms"),
                          Bar("COMPLETED", 8, None, "#15803d", "22:25:40.000")],
                         [Tick(-3, "#d97706", "WAIT"), Tick(-0.3, "#15803d", "GO")],
                         [Event("switchover", "switchover", 0.0, -0.1)], (-5, 9))
    assert svg.count('class="phase-bar"') == 2 and svg.count('class="moment"') == 1
    assert svg.count('class="decision"') == 2 and "<title>GO</title>" in svg
    assert re.findall(r'class="row-label"[^>]*>([A-Za-z_]+)<', svg) == ["VALIDATING", "SWITCHING", "COMPLETED",
                                                                       "decisions"]
    assert 'data-kind="switchover"' in svg
