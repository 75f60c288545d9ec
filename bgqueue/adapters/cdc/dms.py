"""AWS DMS adapter: a CDC-only replication task moved from the old primary to the new one.

A DMS task cannot carry its checkpoint across a switchover (its checkpoint names the old
primary's binlog), so it is restarted on the new primary from a native position:

1. stop: ``stop_replication_task``; once stopped, its ``RecoveryCheckpoint`` (which names the
   binlog file:position it had read) is compared with the old primary's final coordinates. A
   task that stopped short is resumed on the old primary (``resume-processing``, it is fenced
   and still readable) and stopped again, so that no event between is lost.
2. move: for self-managed clusters the task's source endpoint names a server, so it is
   re-pointed at the new primary (``modify_endpoint``). With ``repoint_endpoint: false`` (the
   endpoint names a DNS record that follows the writer, or an RDS blue/green where green takes
   the name) it is left alone.
3. resume: ``start_replication_task(StartReplicationTaskType='start-replication',
   CdcStartPosition='<file>:<pos>')`` with the new primary's binlog coordinates captured at its
   promotion: everything before them in green's binlog is blue's history, which the task already
   delivered; everything after is new. Native file:position rather than GTIDs because that is
   the start-position form DMS documents for MySQL sources (GTIDs are not a CdcStartPosition
   form), and the checkpoint captures it at the exact promotion point.
   Only ``cdc`` tasks: on a ``full-load-and-cdc`` task ``start-replication`` reloads the target.
Then the task is watched until it is running (status, last failure, CloudWatch CDCLatencySource).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bgqueue.adapters.cdc.pipeline import Coordinates, Outcome, PipelineHealth
from bgqueue.model.cdc import DmsPipeline
from bgqueue.model.fleet import ClusterSpec

POLL_S = 5.0
DRAIN_RUN_S = 15.0  # how long a task resumed on the old primary runs before it is stopped again
MAX_DRAINS = 3
STOPPED = {"stopped", "ready", "failed"}
_CHECKPOINT_POS = re.compile(r"#([^#:]+):(\d+):")  # checkpoint:V1#<n>#<file>:<pos>:...

AwsClients = Callable[[str, "str | None"], Any]


def parse_recovery_checkpoint(text: str | None) -> tuple[str, int] | None:
    """The binlog (file, pos) a DMS MySQL recovery checkpoint names, or None if it names none."""
    m = _CHECKPOINT_POS.search(text or "")
    return (m.group(1), int(m.group(2))) if m else None


def binlog_before(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Is binlog coordinate ``a`` strictly before ``b`` (same server's numbered binlog files)?"""
    def key(c: tuple[str, int]) -> tuple[str, int, int]:
        stem, _, num = c[0].rpartition(".")
        return (stem, int(num) if num.isdigit() else 0, c[1])
    return key(a) < key(b)


class DmsAdapter:
    """Pipeline interface over one DMS replication task (boto3 clients from ``aws(service, region)``)."""

    kind = "dms"

    def __init__(self, cluster: ClusterSpec, spec: DmsPipeline, aws: AwsClients):
        self.cluster, self.spec, self.name = cluster, spec, spec.name
        self.dms = aws("dms", spec.region)
        self._aws = aws

    # --- the steps -----------------------------------------------------------------------
    def stop(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        task = self._task()
        if task["MigrationType"] != "cdc":
            return Outcome(problem=f"DMS task {self.spec.task_arn} is {task['MigrationType']}: only cdc tasks can be "
                                   f"restarted from a position (start-replication would reload the target)")
        status = task["Status"]
        if scratch.get("drain_started_at"):  # resumed on the old primary: let it run a while first
            if status != "running" or now - scratch["drain_started_at"] < DRAIN_RUN_S:
                return Outcome(wait_s=POLL_S, detail={"task_status": status, "draining": True})
            scratch["drain_started_at"] = None
        if status not in STOPPED:
            if status == "running" and not scratch.get("stop_requested_at"):
                self.dms.stop_replication_task(ReplicationTaskArn=self.spec.task_arn)
                scratch["stop_requested_at"] = now
            return Outcome(wait_s=POLL_S, detail={"task_status": status})
        detail = {"task_status": status, "recovery_checkpoint": task.get("RecoveryCheckpoint"),
                  "drains": scratch.get("drains", 0)}
        read = parse_recovery_checkpoint(task.get("RecoveryCheckpoint"))
        final = (cp.old_binlog_file, cp.old_binlog_pos) if cp.old_binlog_file and cp.old_binlog_pos else None
        if read is None or final is None:
            detail["drained"] = None  # nothing to compare: the task's checkpoint or blue's coordinates are missing
            return Outcome(done=True, detail=detail)
        if not binlog_before(read, final):
            detail["drained"] = True
            return Outcome(done=True, detail=detail)
        if scratch.get("drains", 0) >= MAX_DRAINS:
            return Outcome(problem=f"DMS task {self.spec.task_arn} stopped at {read[0]}:{read[1]}, before the old "
                                   f"primary's final position {final[0]}:{final[1]}, after {MAX_DRAINS} attempts to "
                                   f"let it read on; moving it would lose the events between", detail=detail)
        # Let it read the rest of the old primary's binlog, then stop it again.
        self.dms.start_replication_task(ReplicationTaskArn=self.spec.task_arn,
                                        StartReplicationTaskType="resume-processing")
        scratch.update(drains=scratch.get("drains", 0) + 1, stop_requested_at=None, drain_started_at=now)
        return Outcome(wait_s=POLL_S, detail={**detail, "draining_from": f"{read[0]}:{read[1]}"})

    def move(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        if not self.spec.repoint_endpoint:
            return Outcome(done=True, detail={"repointed": False})
        arn = self._task()["SourceEndpointArn"]
        endpoint = self.dms.describe_endpoints(Filters=[{"Name": "endpoint-arn", "Values": [arn]}])["Endpoints"][0]
        host, port = cp.new_endpoint
        was = f"{endpoint.get('ServerName')}:{endpoint.get('Port')}"
        if (endpoint.get("ServerName"), endpoint.get("Port")) != (host, port):
            # Only the server changes; the endpoint keeps its user and password (never read here).
            self.dms.modify_endpoint(EndpointArn=arn, ServerName=host, Port=port)
        return Outcome(done=True, detail={"repointed": True, "endpoint": arn, "from": was, "to": cp.new_primary})

    def resume(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        if not scratch.get("start_requested_at"):
            if not cp.new_binlog_file or not cp.new_binlog_pos:
                return Outcome(problem="the checkpoint has no binlog coordinates of the new primary: "
                                       "a DMS task cannot be started from a native position")
            start = f"{cp.new_binlog_file}:{cp.new_binlog_pos}"
            self.dms.start_replication_task(ReplicationTaskArn=self.spec.task_arn,
                                            StartReplicationTaskType="start-replication", CdcStartPosition=start)
            scratch.update(start_requested_at=now, cdc_start_position=start)
        task = self._task()
        status = task["Status"]
        detail = {"task_status": status, "cdc_start_position": scratch.get("cdc_start_position")}
        if status == "running":
            detail["cdc_latency_s"] = self.latency_s(task)
            return Outcome(done=True, detail=detail)
        if status in ("failed", "stopped") and task.get("LastFailureMessage"):
            return Outcome(problem=f"DMS task {self.spec.task_arn} is {status}: {task['LastFailureMessage']}",
                           detail=detail)
        return Outcome(wait_s=POLL_S, detail=detail)

    def health(self) -> PipelineHealth:
        task = self._task()
        status = task["Status"]
        latency = self.latency_s(task) if status == "running" else None
        healthy = status == "running" and (latency is None or latency <= self.spec.max_latency_s)
        error = task.get("LastFailureMessage") or (task.get("StopReason") if status != "running" else None)
        return PipelineHealth(cluster=self.cluster.name, pipeline=self.name, kind=self.kind, state=status,
                              healthy=healthy, lag_s=latency, last_error=error or None,
                              detail={"task_arn": self.spec.task_arn, "stop_reason": task.get("StopReason")})

    # --- reads ---------------------------------------------------------------------------
    def _task(self) -> dict:
        tasks = self.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [self.spec.task_arn]}])["ReplicationTasks"]
        if not tasks:
            raise LookupError(f"DMS task {self.spec.task_arn} not found")
        return tasks[0]

    def latency_s(self, task: dict) -> float | None:
        """The latest CDCLatencySource (seconds) CloudWatch has for the task, or None."""
        instances = self.dms.describe_replication_instances(Filters=[
            {"Name": "replication-instance-arn", "Values": [task["ReplicationInstanceArn"]]}])["ReplicationInstances"]
        if not instances:
            return None
        now = datetime.now(UTC)
        # The end reaches one period ahead so that the current, still partial minute is included.
        points = self._aws("cloudwatch", self.spec.region).get_metric_statistics(
            Namespace="AWS/DMS", MetricName="CDCLatencySource", StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1),
            Period=60, Statistics=["Maximum"],
            Dimensions=[{"Name": "ReplicationInstanceIdentifier", "Value": instances[0]["ReplicationInstanceIdentifier"]},
                        # DMS publishes task metrics under the task's resource id: the ARN's last part.
                        {"Name": "ReplicationTaskIdentifier", "Value": self.spec.task_arn.rsplit(":", 1)[-1]}],
        )["Datapoints"]
        if not points:
            return None
        return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])
