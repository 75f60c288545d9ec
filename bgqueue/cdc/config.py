"""CDC pipelines as the fleet file declares them (per cluster, under ``pipelines:``)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from bgqueue.schema_base import Credentials, StrictModel

TABLE_RE = r"^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$"


class BinlogPipeline(StrictModel):
    """The built-in consumer (mysql-replication) streaming row events of some tables to a Redis stream."""

    kind: Literal["binlog"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    tables: list[Annotated[str, Field(pattern=TABLE_RE)]] = Field(min_length=1)
    stream: str | None = None  # default bgq:cdc:{cluster}:{name}
    user: Credentials | None = None  # default: the cluster's replication credentials


class DmsPipeline(StrictModel):
    """An AWS DMS replication task whose source follows the writer."""

    kind: Literal["dms"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    task_arn: str
    region: str | None = None


class DebeziumPipeline(StrictModel):
    """A Debezium MySQL connector on a Kafka Connect cluster (offsets API, Kafka >= 3.6)."""

    kind: Literal["debezium"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    connect_url: str
    connector: str
    topic_prefix: str


PipelineSpec = Annotated[Union[BinlogPipeline, DmsPipeline, DebeziumPipeline], Field(discriminator="kind")]
