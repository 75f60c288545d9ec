"""Query replay as the fleet file declares it (per cluster, under ``replay:``), and the differences a
change declares on purpose (under ``change.replay_differences``).

Production's read queries are captured from blue (its slow or general log, table or file output;
performance_schema's statement history; or a file the operator supplies), grouped into classes by
fingerprint, and replayed on blue and green pinned at one GTID position. Every bound here keeps
replay from hurting production: how many classes and examples, how long one statement may run on
either server, how many sessions per server at once.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bgqueue.model.schema_base import StrictModel

SOURCES = ("slow_log", "general_log", "digest", "file")
FILE_FORMATS = ("auto", "slow", "general", "sql")


class ReplaySpec(StrictModel):
    """Where the queries come from and how hard replay may press on the servers."""

    source: Literal["slow_log", "general_log", "digest", "file"] = Field(
        description="slow_log / general_log: blue's log (``path`` for file output, else the mysql.* table); "
                    "digest: performance_schema's statement history; file: a file the operator supplies")
    path: str | None = Field(default=None, min_length=1,
                             description="the log or query file, as the worker reads it (slow_log/general_log with "
                                         "log_output=FILE, and file)")
    format: Literal["auto", "slow", "general", "sql"] = Field(
        default="auto", description="for source: file — a slow log, a general log, or SQL statements ended by ';'")
    database: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_$]{1,64}$",
                                description="default database for statements whose log names none")
    max_statements: int = Field(default=20_000, gt=0, le=1_000_000, description="statements read from the source")
    max_classes: int = Field(default=200, gt=0, le=10_000, description="classes replayed (the most frequent first)")
    samples_per_class: int = Field(default=5, gt=0, le=100, description="real examples replayed per class")
    max_query_time_s: float = Field(default=2.0, gt=0, le=600,
                                    description="per statement, on both servers (max_statement_time / MAX_EXECUTION_TIME)")
    concurrency: int = Field(default=2, gt=0, le=16, description="replay sessions per server at once")
    latency_ratio: float = Field(default=10.0, gt=1, le=1000,
                                 description="a class is slower on green when its p50 and p95 are this many times blue's")
    latency_floor_ms: float = Field(default=1.0, ge=0, le=60_000,
                                    description="… and its p50 is at least this much slower (noise on tiny queries)")
    latency_fails: bool = Field(default=True, description="a latency regression alone is a NO_GO reason")
    pin_timeout_s: float = Field(default=30.0, gt=0, le=300,
                                 description="how long green may take to reach blue's snapshot position")
    snapshot_max_age_s: float = Field(default=10.0, gt=0, le=600,
                                      description="a replay session pair is pinned anew past this age (old snapshots "
                                                  "slow every read under writes and hold back purge on blue)")

    @model_validator(mode="after")
    def _path_where_needed(self) -> ReplaySpec:
        if self.source == "file" and self.path is None:
            raise ValueError("source: file needs a path")
        if self.source == "digest" and self.path is not None:
            raise ValueError("source: digest reads performance_schema: it takes no path")
        if self.source != "file" and self.format != "auto":
            raise ValueError("format applies to source: file only (a log's format is detected)")
        return self


class DeclaredDifference(StrictModel):
    """A class of queries the change is known to answer differently, with why: reported, never failing.
    ``fingerprint`` is a fingerprint as ``bgqueue replay`` prints it, or any example of the class."""

    fingerprint: str = Field(min_length=1, max_length=10_000)
    reason: str = Field(min_length=1, max_length=500)
