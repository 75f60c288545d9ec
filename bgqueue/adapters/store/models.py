"""Store tables (SQLAlchemy 2). The store is the authority on phases and the audit trail."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Float and timezone-aware DateTime everywhere; on MySQL-family servers DOUBLE (their FLOAT has 4
# bytes: unix seconds would be off by minutes) and DATETIME(6) (their DATETIME keeps whole seconds).
FLOAT = Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    fleet_name: Mapped[str] = mapped_column(String(64))
    fleet_path: Mapped[str] = mapped_column(Text)
    fleet_sha256: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING | DONE
    summary: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_cluster", "cluster", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(24), default="PENDING")
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    spec: Mapped[dict] = mapped_column(JSON)  # the cluster spec: endpoints, env var *names*, thresholds
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    facts: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # observed: flavours, versions
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    phase_deadline: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    switch_started_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    switch_ended_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    switch_duration_ms: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    writes_blocked_ms: Mapped[float | None] = mapped_column(FLOAT, nullable=True)  # fence → route flip
    finished_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    # After COMPLETED the old primary stays a reverse replica (rollback possible) until then.
    retention_until: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    decommissioned_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    baseline: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # blue's figures before the switch
    # The last time a task worked on it (claims and journal writes move updated_at; a tick that only
    # observes moves this): the watchdog's owner-liveness rule.
    heartbeat_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class PhaseChange(Base):
    __tablename__ = "phase_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    from_phase: Mapped[str] = mapped_column(String(24))
    to_phase: Mapped[str] = mapped_column(String(24))
    epoch: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class Step(Base):
    """The journal: one row per sub-step of a multi-step procedure."""

    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    procedure: Mapped[str] = mapped_column(String(32))  # switchover | rollback | prepare | …
    name: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(12))  # started | done | failed | undone | skipped
    epoch: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(FLOAT, nullable=True)


class Checkpoint(Base):
    """Replication coordinates captured at a switchover or rollback (what CDC resumes from)."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # switchover | rollback
    old_primary: Mapped[str] = mapped_column(String(128))
    new_primary: Mapped[str] = mapped_column(String(128))
    old_gtid: Mapped[str | None] = mapped_column(Text, nullable=True)  # final position of the old primary
    old_binlog_file: Mapped[str | None] = mapped_column(String(128), nullable=True)
    old_binlog_pos: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_gtid: Mapped[str | None] = mapped_column(Text, nullable=True)  # new primary at promotion
    new_binlog_file: Mapped[str | None] = mapped_column(String(128), nullable=True)
    new_binlog_pos: Mapped[int | None] = mapped_column(Integer, nullable=True)
    captured_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class Signoff(Base):
    """A team's sign-off on one change of one cluster (keyed by the change's fingerprint)."""

    __tablename__ = "signoffs"
    __table_args__ = (Index("ix_signoffs_cluster_change", "cluster", "change_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(64))
    change_key: Mapped[str] = mapped_column(String(64))
    team: Mapped[str] = mapped_column(String(64))
    signed_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class CheckResultRow(Base):
    """One check's structured result in one validation round."""

    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(8))  # pass | fail | error | wait
    retryable: Mapped[bool] = mapped_column(default=False)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    threshold: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class DecisionRow(Base):
    """The go/no-go engine's verdict for one round, with every reason."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="pre_switch")  # pre_switch | monitor
    round: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(8))  # GO | NO_GO | WAIT | ROLLBACK | HOLD
    reasons: Mapped[list | None] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class MetricSummary(Base):
    """Per-phase summary of one sampled metric of one deployment (the samples live in Redis)."""

    __tablename__ = "metric_summaries"
    __table_args__ = (Index("ix_metric_summaries_dep", "deployment_id", "phase"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"))
    phase: Mapped[str] = mapped_column(String(24))
    metric: Mapped[str] = mapped_column(String(48))
    count: Mapped[int] = mapped_column(Integer)
    min: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    max: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    mean: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    p50: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    p95: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    p99: Mapped[float | None] = mapped_column(FLOAT, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)


class MetricPoint(Base):
    """A downsampled point of one metric of one deployment: what plots and reports are drawn from
    after the Redis samples have expired (the store outlives the sampler's retention)."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_dep_metric", "deployment_id", "metric", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"))
    metric: Mapped[str] = mapped_column(String(48))
    ts: Mapped[float] = mapped_column(FLOAT)  # unix seconds
    value: Mapped[float] = mapped_column(FLOAT)


# MySQL cannot index a TEXT column without a prefix length: there the key is a VARCHAR as long as an
# InnoDB utf8mb4 index allows (3072 bytes). TEXT elsewhere, as migration 0005 made it.
REGISTRATION_PATH = Text().with_variant(String(768), "mysql", "mariadb")


class FleetRegistration(Base):
    """A fleet file the nightly validations cover (`bgqueue fleet register FILE`)."""

    __tablename__ = "fleet_registrations"

    path: Mapped[str] = mapped_column(REGISTRATION_PATH, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class NightlyRun(Base):
    __tablename__ = "nightly_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))  # beat | manual
    started_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    clusters: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[int] = mapped_column(Integer, default=0)


class NightlyFinding(Base):
    """Something a nightly validation found wrong (a passing check is recorded with status pass)."""

    __tablename__ = "nightly_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("nightly_runs.id"), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    check: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(8))  # pass | fail | error
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)


class RouteRow(Base):
    """A cluster's writer endpoint: the authority (Redis holds its published copy, rebuilt from
    here). Changed only by compare-and-set on ``version``. ``endpoints``: the cluster's declared
    servers ([host, port] pairs), the allow-list that clients accept routes from."""

    __tablename__ = "routes"

    namespace: Mapped[str] = mapped_column(String(32), primary_key=True)
    cluster: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)  # unix seconds, as in the Redis copy
    reason: Mapped[str] = mapped_column(Text, default="")
    endpoints: Mapped[list | None] = mapped_column(JSON, nullable=True)
