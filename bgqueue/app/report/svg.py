"""Inline SVG drawn in Python: line plots with event markers, and a phase timeline (a Gantt chart).

No JavaScript and no external resource: the report is one file that opens anywhere, prints, and
outlives the servers it describes. The x axis of every drawing is in seconds relative to a
reference moment (the switchover's route flip), so "before" and "after" read the same way in
every plot of a cluster.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Candidate tick steps in seconds: humans read 10 s, 30 s, 1 min, 5 min... not 7.3 s.
_TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
_CHAR_W = 6.0  # approximate width of one 11px label character, for label placement
EVENT_COLORS = {"switchover": "#15803d", "rollback": "#b91c1c", "failed": "#b45309"}


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x in seconds relative to the reference, value), oldest first."""

    key: str
    label: str
    color: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Event:
    """A moment marked on every drawing: a vertical line at ``x`` (relative seconds), optionally a
    shaded band from ``band_from`` (the writes-blocked interval of a switchover or rollback)."""

    kind: str  # switchover | rollback | failed
    label: str
    x: float
    band_from: float | None = None


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k) covering [lo, hi]; about ``target`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    n = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(n)]


def time_ticks(lo: float, hi: float, target: int = 7) -> tuple[list[float], float]:
    """Ticks of a relative time axis on human steps (s, min, h), always including 0 when in range."""
    span = max(hi - lo, 1e-6)
    step = next((s for s in _TIME_STEPS if span / s <= target), _TIME_STEPS[-1])
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 9) for i in range(int((hi - first) / step + 1e-9) + 1)], step


def fmt_rel(seconds: float, step: float) -> str:
    """A relative time label: 0, +5 s, −30 s, +2 min, +1.5 h."""
    if abs(seconds) < step / 1000:
        return "0"
    sign = "+" if seconds > 0 else "\u2212"
    a = abs(seconds)
    if step >= 3600:
        return f"{sign}{a / 3600:g} h"
    if step >= 60:
        return f"{sign}{a / 60:g} min"
    return f"{sign}{a:.1f} s" if step < 1 else f"{sign}{a:g} s"


def fmt_value(v: float) -> str:
    """A compact axis value: 0, 0.25, 12, 1.5k, 2M."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a == 0 or a >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def path_d(points: list[tuple[float, float]], sx, sy, gap: float) -> tuple[str, int]:
    """SVG path data through the points; a hole in the data longer than ``gap`` seconds breaks the
    line (no sample is not the same as a straight line). Returns (d, number of points drawn)."""
    parts: list[str] = []
    prev_x: float | None = None
    for x, y in points:
        cmd = "M" if prev_x is None or x - prev_x > gap else "L"
        parts.append(f"{cmd}{sx(x):.1f},{sy(y):.1f}")
        prev_x = x
    return " ".join(parts), len(parts)


class _Frame:
    """Scales from data to SVG coordinates inside a plot area."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, left: float, top: float, right: float,
                 bottom: float):
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.left, self.top, self.right, self.bottom = left, top, right, bottom

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def sy(self, y: float) -> float:
        return self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)


def _label_rows(events: list[Event], frame: _Frame, rows: int = 2) -> list[int]:
    """A label row per event so that labels of nearby events do not overlap (greedy, by x)."""
    ends = [-1e9] * rows
    out = []
    for e in events:
        x = frame.sx(e.x)
        width = len(e.label) * _CHAR_W + 8
        row = next((r for r in range(rows) if ends[r] < x - 2), rows - 1)
        ends[row] = x + width
        out.append(row)
    return out


def _events_svg(events: list[Event], frame: _Frame, label_top: float) -> list[str]:
    out: list[str] = []
    events = sorted((e for e in events if frame.x0 <= e.x <= frame.x1), key=lambda e: e.x)
    for e, row in zip(events, _label_rows(events, frame), strict=False):
        color = EVENT_COLORS.get(e.kind, "#334155")
        x = frame.sx(e.x)
        if e.band_from is not None:
            bx = frame.sx(max(frame.x0, e.band_from))
            out.append(f'<rect class="band" x="{min(bx, x - 1.5):.1f}" y="{frame.top:.1f}" '
                       f'width="{max(x - bx, 3):.1f}" height="{frame.bottom - frame.top:.1f}" fill="{color}" '
                       f'fill-opacity="0.14"/>')
        y = label_top + row * 12
        anchor, dx = ("end", -3) if x + 3 + len(e.label) * _CHAR_W > frame.right else ("start", 3)
        out.append(f'<g class="marker" data-kind="{escape(e.kind)}">'
                   f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2:.1f}" y2="{frame.bottom:.1f}" stroke="{color}" '
                   f'stroke-width="1.4" stroke-dasharray="4 3"/>'
                   f'<text x="{x + dx:.1f}" y="{y + 7:.1f}" text-anchor="{anchor}" fill="{color}" '
                   f'class="marker-label">{escape(e.label)}</text></g>')
    return out


def _x_axis(frame: _Frame, target: int = 7) -> list[str]:
    ticks, step = time_ticks(frame.x0, frame.x1, target)
    out = [f'<line class="axis" x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}"/>']
    for t in ticks:
        x = frame.sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{frame.bottom + 13}" text-anchor="middle">'
                   f'{fmt_rel(t, step)}</text>')
    return out


def line_plot(plot_id: str, title: str, unit: str, series: list[Series], events: list[Event],
              x_range: tuple[float, float], *, width: int = 520, height: int = 200, gap: float = 3.5) -> str:
    """One plot as an ``<svg class="plot">``: each series a ``<path class="series">`` whose
    ``data-points`` says how many points it drew; events as dashed lines with labels above the
    plot area. A plot with no point at all says so instead of drawing an empty frame."""
    x0, x1 = x_range
    shown = [Series(s.key, s.label, s.color, [(x, v) for x, v in s.points if x0 <= x <= x1]) for s in series]
    values = [v for s in shown for _, v in s.points]
    lo = min(0.0, min(values, default=0.0))
    hi = max(values, default=1.0)
    yt = nice_ticks(lo, hi if hi > lo else lo + 1, 4)
    if yt[-1] < hi:
        yt.append(yt[-1] + (yt[1] - yt[0] if len(yt) > 1 else 1))
    y_lo, y_hi = yt[0], yt[-1] if yt[-1] > yt[0] else yt[0] + 1
    pad = (y_hi - y_lo) * 0.04  # a line at exactly 0 stays visible above the axis
    frame = _Frame(x0, x1, y_lo - pad, y_hi, 46, 34, width - 10, height - 22)
    out = [f'<svg id="{escape(plot_id)}" class="plot" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}" data-title="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    out.append(f'<text class="unit" x="4" y="{frame.top - 8}">{escape(unit)}</text>')
    for v in yt:
        y = frame.sy(v)
        out.append(f'<line class="grid" x1="{frame.left}" x2="{frame.right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{frame.left - 5}" y="{y + 3.5:.1f}" text-anchor="end">{fmt_value(v)}</text>')
    out += _x_axis(frame)
    out += _events_svg(events, frame, 4)
    for s in shown:
        if not s.points:
            continue
        d, n = path_d(s.points, frame.sx, frame.sy, gap)
        out.append(f'<path class="series" data-series="{escape(s.key)}" data-points="{n}" d="{d}" fill="none" '
                   f'stroke="{s.color}" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/>')
    if not values:
        cx, cy = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2
        out.append(f'<text class="empty" x="{cx:.0f}" y="{cy:.0f}" text-anchor="middle">'
                   'no samples recorded in this interval</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Bar:
    """One row of the phase timeline: ``start``/``end`` relative seconds; ``end`` None = a moment."""

    label: str
    start: float
    end: float | None
    color: str
    note: str = ""


@dataclass(frozen=True)
class Tick:
    """A point event on the timeline's last row (a decision): colour by verdict, a short text."""

    x: float
    color: str
    text: str


def phase_timeline(bars: list[Bar], ticks: list[Tick], events: list[Event], x_range: tuple[float, float],
                   *, width: int = 1000, row_h: int = 17) -> str:
    """The deployment's phases as a Gantt chart (one row per phase, in order), its decisions on a
    last row, and the same event markers as the plots. Durations are written beside each bar, so
    a 70 ms READY is as readable as a 20 min MONITORING."""
    rows = len(bars) + (1 if ticks else 0)
    height = 36 + rows * row_h + 22
    frame = _Frame(x_range[0], x_range[1], 0, 1, 120, 36, width - 70, 36 + rows * row_h)
    out = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" aria-label="phase timeline" '
           f'xmlns="http://www.w3.org/2000/svg">']
    out += _x_axis(frame, 12)  # twice as wide as a plot: about twice the ticks
    for i, b in enumerate(bars):
        y = frame.top + i * row_h
        out.append(f'<text class="row-label" x="{frame.left - 6}" y="{y + row_h - 5}" text-anchor="end">'
                   f'{escape(b.label)}</text>')
        x = frame.sx(b.start)
        if b.end is None:
            out.append(f'<path class="moment" d="M{x:.1f},{y + 3} l5,5.5 l-5,5.5 l-5,-5.5 z" fill="{b.color}"/>')
            tx = x + 8
        else:
            w = max(frame.sx(b.end) - x, 2.0)
            out.append(f'<rect class="phase-bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                       f'rx="2" fill="{b.color}"/>')
            tx = x + w + 4
        if b.note:
            out.append(f'<text class="bar-note" x="{tx:.1f}" y="{y + row_h - 5}">{escape(b.note)}</text>')
    if ticks:
        y = frame.top + len(bars) * row_h
        out.append(f'<text class="row-label" x="{frame.left - 6}" y="{y + row_h - 5}" '
                   'text-anchor="end">decisions</text>')
        for t in ticks:
            x = frame.sx(t.x)
            out.append(f'<rect class="decision" x="{x - 2:.1f}" y="{y + 3}" width="4" height="{row_h - 6}" '
                       f'fill="{t.color}"><title>{escape(t.text)}</title></rect>')
    out += _events_svg(events, frame, 4)
    out.append("</svg>")
    return "".join(out)
