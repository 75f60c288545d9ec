"""CDC pipelines as the fleet file declares them (per cluster, under ``pipelines:``).

Three kinds, one per adapter: ``binlog`` (the built-in consumer, ``bgqueue cdc run``), ``dms``
(an AWS DMS replication task) and ``debezium`` (a Debezium MySQL/MariaDB connector on a Kafka
Connect cluster). Every kind has ``move_timeout_s``: how long the CDC phase may take to move it
to the new primary before it reports a problem.
"""
from __future__ import annotations

import zlib
from typing import Annotated, Literal

from pydantic import Field

from bgqueue.model.schema_base import Credentials, StrictModel

TABLE_RE = r"^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$"
PIPELINE_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Binlog clients register with the source like replicas; ids from this range stay clear of the
# small ids servers use. Two clients with one id make the server drop the older connection.
CLIENT_SERVER_ID_BASE = 0x70000000
CLIENT_SERVER_ID_SPAN = 0x0FFFFFFF
# A named stream lives under its own prefix, outside bgqueue's keys (``bgq:*``: routes, locks,
# maintenance, samples, CDC positions) and Celery's (the ``bgqueue`` queue, ``_kombu.*``,
# ``unacked*``, ``celery-task-meta-*``): a pipeline can never append to, trim or read them.
STREAM_RE = r"^cdc:[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
# Moving a pipeline to the new primary is part of the CDC phase; an hour is already an outage.
MOVE_TIMEOUT_MAX_S = 3600.0


class BinlogPipeline(StrictModel):
    """The built-in consumer (mysql-replication) streaming row events of some tables to a Redis stream."""

    kind: Literal["binlog"]
    name: str = Field(pattern=PIPELINE_NAME_RE)
    tables: list[Annotated[str, Field(pattern=TABLE_RE)]] = Field(min_length=1)
    stream: str | None = Field(default=None, pattern=STREAM_RE,
                               description="Redis stream, named cdc:…; default bgq:cdc:{cluster}:{name}")
    user: Credentials | None = Field(
        default=None, description="needs REPLICATION SLAVE, REPLICATION CLIENT, SELECT; default: the "
                                  "cluster's replication credentials")
    start: Literal["current", "earliest"] = Field(
        default="current", description="where a pipeline with no stored position starts: the source's "
                                       "current position, or the oldest binlog it still has")
    heartbeat_s: float = Field(
        default=0.2, gt=0, le=30,
        description="the source sends a heartbeat after this much idle time; bounds how late a route flip is seen")
    server_id: int | None = Field(default=None, ge=1, le=2**32 - 1,
                                  description="replica id the consumer registers with; default derived from the name")
    stream_maxlen: int | None = Field(default=None, ge=1000, le=1_000_000_000,
                                      description="approximate cap on the stream's length (XADD MAXLEN ~)")
    move_timeout_s: float = Field(default=120.0, gt=0, le=MOVE_TIMEOUT_MAX_S)

    def stream_key(self, cluster: str) -> str:
        """The Redis stream this pipeline writes to."""
        return self.stream or f"bgq:cdc:{cluster}:{self.name}"

    def client_server_id(self, cluster: str) -> int:
        """The replica id to register with: configured, else stable per (cluster, pipeline)."""
        if self.server_id is not None:
            return self.server_id
        return CLIENT_SERVER_ID_BASE + zlib.crc32(f"{cluster}/{self.name}".encode()) % CLIENT_SERVER_ID_SPAN

    def schema_tables(self) -> set[tuple[str, str]]:
        """The selected tables as (schema, table) pairs."""
        return {tuple(t.split(".", 1)) for t in self.tables}  # type: ignore[misc]


class DmsPipeline(StrictModel):
    """An AWS DMS replication task (migration type ``cdc``) whose MySQL source follows the writer."""

    kind: Literal["dms"]
    name: str = Field(pattern=PIPELINE_NAME_RE)
    task_arn: str = Field(pattern=r"^arn:[^:]+:dms:")
    region: str | None = None
    repoint_endpoint: bool = Field(
        default=True,
        description="modify the task's source endpoint to name the new primary (self-managed clusters); "
                    "false when the endpoint names a DNS record that already follows the writer")
    max_latency_s: float = Field(default=60.0, gt=0, le=86_400.0, description="healthy while CDCLatencySource stays below this")
    move_timeout_s: float = Field(default=600.0, gt=0, le=MOVE_TIMEOUT_MAX_S)


class DebeziumPipeline(StrictModel):
    """A Debezium MySQL/MariaDB connector on a Kafka Connect cluster (offsets API, Kafka >= 3.6)."""

    kind: Literal["debezium"]
    name: str = Field(pattern=PIPELINE_NAME_RE)
    connect_url: str = Field(pattern=r"^https?://")
    connector: str = Field(min_length=1)
    topic_prefix: str = Field(min_length=1, description="the connector's topic.prefix: its source partition's 'server'")
    repoint: bool = Field(default=True,
                          description="set database.hostname/port of the connector to the new primary")
    request_timeout_s: float = Field(default=10.0, gt=0, le=120)
    move_timeout_s: float = Field(default=300.0, gt=0, le=MOVE_TIMEOUT_MAX_S)


PipelineSpec = Annotated[BinlogPipeline | DmsPipeline | DebeziumPipeline, Field(discriminator="kind")]
