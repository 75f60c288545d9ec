"""Small text formats shared by the report's sections: badges, times, durations, figures, details."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape


def badge(text: str | None, small: bool = False) -> str:
    """A coloured label; its class ``s-<text>`` picks the colour (phase, verdict or status)."""
    t = escape(text or "-")
    return f'<span class="badge s-{t}{" small" if small else ""}">{t}</span>'


def clock(t: float | None) -> str:
    """HH:MM:SS.mmm UTC of unix seconds."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def stamp(t: float | None) -> str:
    """YYYY-MM-DD HH:MM:SS UTC of unix seconds."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def rel(x: float) -> str:
    """Seconds relative to a cluster's reference moment: +1.25 s, −0.10 s, +12.5 min."""
    return f"{x:+.2f} s" if abs(x) < 100 else f"{x / 60:+.1f} min"


def dur(seconds: float | None) -> str:
    """A duration for people: 72 ms, 3.79 s, 12.5 min."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def num(v: float | None, digits: int = 1) -> str:
    """A figure for a table: whole numbers without decimals, others with ``digits``."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.{digits}f}"


def _flat(prefix: str, value: object) -> list[str]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _flat(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif not isinstance(value, (str, int, bool)) and value is not None:
        value = json.dumps(value, separators=(",", ":"))
    return [f"{prefix}={value}"]


def compact(detail: object, limit: int = 320) -> str:
    """A journal detail as ``key=value, …`` (nested keys dotted, floats to 4 digits), truncated."""
    if not detail:
        return ""
    text = ", ".join(_flat("", detail)) if isinstance(detail, dict) else json.dumps(detail, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 1] + "…"
