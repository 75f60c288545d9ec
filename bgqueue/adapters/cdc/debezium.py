"""Debezium adapter: a MySQL/MariaDB connector moved through the Kafka Connect REST API.

Needs the offsets API of Kafka Connect 3.6+ (KIP-875): checked first, before anything is
stopped, so a cluster without it gets a clear error and a connector that keeps running.

1. stop: ``PUT /connectors/{n}/stop`` (204), then ``GET /connectors/{n}/status`` until STOPPED.
   Without GTIDs in its offset (``GET /connectors/{n}/offsets``) it must have read the old
   primary up to its final coordinates: a connector that stopped short is resumed (its source
   is still the old primary, fenced and readable) and stopped again, or the events between
   would be lost;
2. move: ``PATCH /connectors/{n}/offsets`` with
   ``{"offsets": [{"partition": {"server": <topic.prefix>}, "offset": {...}}]}``: with ``gtids``
   (GTID mode) it keeps them (they are what it has delivered; Debezium resumes from a GTID set,
   which the new primary holds under the same GTIDs) and ``file``/``pos`` become the new
   primary's promotion coordinates; without, the offset is the new primary's ``file``/``pos``
   at promotion. With ``repoint`` the config's ``database.hostname``/``database.port`` are set
   to the new primary (``PUT /connectors/{n}/config``);
3. resume: ``PUT /connectors/{n}/resume`` (202), then the status until the connector and its
   tasks are RUNNING (a FAILED task is a problem, with the first line of its trace).
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from bgqueue.adapters.cdc.dms import binlog_before
from bgqueue.adapters.cdc.pipeline import Coordinates, Outcome, PipelineError, PipelineHealth
from bgqueue.model.cdc import DebeziumPipeline
from bgqueue.model.fleet import ClusterSpec

POLL_S = 1.0
DRAIN_RUN_S = 10.0  # how long a connector resumed on the old primary runs before it is stopped again
MAX_DRAINS = 3
OFFSETS_API = (3, 6)
# Confluent Platform reports its own version (e.g. 7.6.0-ccs); CP 7.x ships Kafka 3.x, CP 8.x Kafka 4.x.
_CONFLUENT = re.compile(r"^(\d+)\.(\d+)\.\d+-c(?:cs|e)\b")
_VERSION = re.compile(r"^(\d+)\.(\d+)")


def kafka_version(reported: str) -> tuple[int, int] | None:
    """The Apache Kafka (major, minor) a Connect worker's ``GET /`` version names, if recognisable."""
    m = _CONFLUENT.match(reported or "")
    if m and int(m.group(1)) >= 7:
        return int(m.group(1)) - 4, int(m.group(2))
    m = _VERSION.match(reported or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


class ConnectError(PipelineError):
    """An HTTP error answer (``status``) or no answer (``status`` None) from Kafka Connect."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ConnectClient:
    """A few calls of the Kafka Connect REST API (JSON in, JSON out). Errors raise PipelineError."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url.rstrip("/"), timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:200]
            raise ConnectError(f"Kafka Connect {method} {path}: HTTP {e.code}: {message}", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise ConnectError(f"Kafka Connect at {self.url}: {getattr(e, 'reason', e)}") from None


class DebeziumAdapter:
    """Pipeline interface over one connector."""

    kind = "debezium"

    def __init__(self, cluster: ClusterSpec, spec: DebeziumPipeline):
        self.cluster, self.spec, self.name = cluster, spec, spec.name
        self.connect = ConnectClient(spec.connect_url, spec.request_timeout_s)
        self.path = "/connectors/" + urllib.parse.quote(spec.connector, safe="")

    def stop(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        if not scratch.get("version_checked"):
            problem = self._offsets_api_problem()
            if problem:
                return Outcome(problem=problem)
            scratch["version_checked"] = True
        if scratch.get("drain_started_at"):  # resumed on the old primary: let it run a while first
            state = self._status()["connector"]["state"]
            if state != "RUNNING" or now - scratch["drain_started_at"] < DRAIN_RUN_S:
                return Outcome(wait_s=POLL_S, detail={"state": state, "draining": True})
            scratch["drain_started_at"] = None
        if not scratch.get("stop_requested_at"):
            try:
                self.connect.call("PUT", self.path + "/stop")
            except ConnectError as e:
                if e.status == 404:
                    return Outcome(problem=str(e))
                raise
            scratch["stop_requested_at"] = now
        state = self._status()["connector"]["state"]
        if state != "STOPPED":
            return Outcome(wait_s=POLL_S, detail={"state": state})
        offset = self._offset()
        detail = {"state": state, "offset": offset, "drains": scratch.get("drains", 0)}
        read, final = (offset.get("file"), offset.get("pos")), (cp.old_binlog_file, cp.old_binlog_pos)
        if offset.get("gtids") or not all(read) or not all(final) or \
                not binlog_before((str(read[0]), int(read[1])), final):  # type: ignore[arg-type]
            return Outcome(done=True, detail=detail)  # GTIDs carry over; or it read all of the old primary
        if scratch.get("drains", 0) >= MAX_DRAINS:
            return Outcome(problem=f"connector {self.spec.connector} stopped at {read[0]}:{read[1]}, before the old "
                                   f"primary's final position {final[0]}:{final[1]}, and has no GTIDs: moving it "
                                   f"would lose the events between (it is left STOPPED)", detail=detail)
        # Let it read the rest of the old primary's binlog (still its source), then stop it again.
        self.connect.call("PUT", self.path + "/resume")
        scratch.update(drains=scratch.get("drains", 0) + 1, stop_requested_at=None, drain_started_at=now)
        return Outcome(wait_s=POLL_S, detail={**detail, "draining_from": f"{read[0]}:{read[1]}"})

    def move(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        partition = {"server": self.spec.topic_prefix}
        current = self._offset()
        if not cp.new_binlog_file or not cp.new_binlog_pos:
            return Outcome(problem="the checkpoint has no binlog coordinates of the new primary")
        if current.get("gtids"):
            offset = {**current, "file": cp.new_binlog_file, "pos": cp.new_binlog_pos}
        else:  # stop() made sure it had read the old primary up to its final position
            offset = {"file": cp.new_binlog_file, "pos": cp.new_binlog_pos}
        try:
            self.connect.call("PATCH", self.path + "/offsets", {"offsets": [{"partition": partition, "offset": offset}]})
        except ConnectError as e:
            if e.status == 404 and f"connector {self.spec.connector}".lower() in str(e).lower():
                return Outcome(problem=str(e))
            if e.status in (404, 405):  # the route itself is missing: a Connect older than 3.6
                return Outcome(problem=f"Kafka Connect at {self.spec.connect_url} has no offsets API "
                                       f"(PATCH /connectors/{{name}}/offsets needs Kafka >= 3.6): {e}")
            raise
        detail: dict[str, Any] = {"offset_before": current, "offset_after": offset}
        if self.spec.repoint:
            _, config = self.connect.call("GET", self.path + "/config")
            host, port = cp.new_endpoint
            detail["repointed_from"] = f"{config.get('database.hostname')}:{config.get('database.port')}"
            config.update({"database.hostname": host, "database.port": str(port)})
            self.connect.call("PUT", self.path + "/config", config)
        return Outcome(done=True, detail=detail)

    def resume(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        if not scratch.get("resume_requested_at"):
            self.connect.call("PUT", self.path + "/resume")
            scratch["resume_requested_at"] = now
        status = self._status()
        state, tasks = status["connector"]["state"], status.get("tasks", [])
        failed = _failed_task(status)
        if failed:
            return Outcome(problem=f"connector {self.spec.connector}: {failed}", detail={"state": state})
        if state == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
            return Outcome(done=True, detail={"state": state, "tasks": len(tasks)})
        return Outcome(wait_s=POLL_S, detail={"state": state, "tasks": [t.get("state") for t in tasks]})

    def health(self) -> PipelineHealth:
        status = self._status()
        state, tasks = status["connector"]["state"], status.get("tasks", [])
        healthy = state == "RUNNING" and bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)
        return PipelineHealth(cluster=self.cluster.name, pipeline=self.name, kind=self.kind, state=state,
                              healthy=healthy, last_error=_failed_task(status),
                              detail={"connector": self.spec.connector, "tasks": [t.get("state") for t in tasks],
                                      "worker_id": status["connector"].get("worker_id")})

    # --- reads ---------------------------------------------------------------------------
    def _status(self) -> dict:
        _, status = self.connect.call("GET", self.path + "/status")
        return status

    def _offset(self) -> dict:
        """The connector's stored offset for its source partition ({} when it has none)."""
        _, body = self.connect.call("GET", self.path + "/offsets")
        partition = {"server": self.spec.topic_prefix}
        return next((o.get("offset") for o in (body or {}).get("offsets", [])
                     if o.get("partition") == partition), None) or {}

    def _offsets_api_problem(self) -> str | None:
        _, root = self.connect.call("GET", "/")
        reported = str((root or {}).get("version", ""))
        version = kafka_version(reported)
        if version is not None and version < OFFSETS_API:
            return (f"Kafka Connect at {self.spec.connect_url} runs version {reported}: moving connector "
                    f"{self.spec.connector} needs the offsets API (PATCH /connectors/{{name}}/offsets) of "
                    f"Kafka >= 3.6; nothing was changed")
        return None


def _failed_task(status: dict) -> str | None:
    """'task N FAILED: <first line of its trace>' for the first failed task (or connector), else None."""
    units = [("connector", status.get("connector", {}))] + [(f"task {t.get('id')}", t) for t in status.get("tasks", [])]
    for label, unit in units:
        if unit.get("state") == "FAILED":
            trace = (unit.get("trace") or "").strip().splitlines()
            return f"{label} FAILED" + (f": {trace[0]}" if trace else "")
    return None
