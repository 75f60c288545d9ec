"""Logging: one line per event carrying deployment, cluster, batch and step ids; a JSON mode
for log shippers; every known secret masked before a line is written.

Context comes from ``log_context(...)`` (contextvars, so it follows the task that set it).
Secrets are registered by the code that resolves them (``Credentials.password()``) and also
matched by shape: ``PASSWORD='…'`` in a statement, ``IDENTIFIED BY '…'`` (and ``PASSWORD('…')``)
in account statements, ``password=…`` in a message, and the password of any URL's user
information (``redis://:pw@host``, ``rediss://user:pw@host``, up to its last ``@``).
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

from bgqueue.model.secrets import known_secrets

_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("bgqueue_log_context",
                                                               default=MappingProxyType({}))
MASK = "***"
# A quoted SQL string: '' and backslash escapes inside, so a quote in the secret does not end the match.
_QUOTED = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
_SHAPES = [
    re.compile(r"(?i)(password\s*[=:]\s*)(" + _QUOTED + r"|[^\s,;)]+)"),
    # IDENTIFIED BY 'x' | IDENTIFIED BY PASSWORD 'hash' | IDENTIFIED WITH plugin BY|AS 'x' | ... USING 'x'
    re.compile(r"(?i)(\bIDENTIFIED\s+(?:(?:WITH|VIA)\s+[\w'\"`]+\s+)?(?:BY|AS|USING)\s+(?:PASSWORD\s+)?)(" + _QUOTED + r")"),
    re.compile(r"(?i)(\bPASSWORD\s*\(\s*)(" + _QUOTED + r")"),
    # userinfo ends at the last '@' before the host (as urllib and redis-py parse it); an empty user too.
    re.compile(r"(?i)(://[^:/@\s]*:)([^/\s]+)(@)"),
]
FIELDS = ("batch", "deployment", "cluster", "step", "task")


def mask(text: str) -> str:
    for s in known_secrets():
        if s in text:
            text = text.replace(s, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""),
                         text)
    return text


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach ids to every log line emitted inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: str | None) -> None:
    """Add ids to the current context (e.g. the cluster once a task has loaded its deployment)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        for f in FIELDS:
            if not hasattr(record, f):
                setattr(record, f, ctx.get(f))
        return True


class MaskingFormatter(logging.Formatter):
    """Plain text: `time level logger [k=v …] message`, masked."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, None))
        base = f"{self.formatTime(record)} {record.levelname} {record.name}" + (f" [{ids}]" if ids else "")
        text = f"{base} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return mask(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, masked."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(record.created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for f in FIELDS:
            if getattr(record, f, None):
                doc[f] = getattr(record, f)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return mask(json.dumps(doc, default=str))


def configure(json_mode: bool = False, level: int | str = logging.INFO, stream=None) -> None:
    """Install the one handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_bgqueue", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._bgqueue = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_mode else MaskingFormatter())
    root.addHandler(handler)
    root.setLevel(level)
