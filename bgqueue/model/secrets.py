"""The secrets this process has resolved: every log line and message is masked against them.

Credentials register a password here the moment they resolve it (model/schema_base.py); the
log formatter (adapters/logs.py) masks every registered value. Plain data, no I/O.
"""
from __future__ import annotations

import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask this value in every log line from now on (short values would mask too much)."""
    if value and len(value) >= 6:
        with _LOCK:
            _SECRETS.add(value)


def known_secrets() -> frozenset[str]:
    with _LOCK:
        return frozenset(_SECRETS)
