"""The per-cluster chain: prepare → wait_for_sync → validate (a chord) → switch → migrate_cdc → monitor."""
from __future__ import annotations

from bgqueue import lifecycle
from tasks.base import deployment_task
from tasks.validation import validate

prepare = deployment_task("prepare", time_limit=60)(lifecycle.prepare)
wait_for_sync = deployment_task("wait_for_sync", time_limit=60)(lifecycle.wait_for_sync)
# The switchover is bounded by the catch-up bound (≤ 300 s) plus a few round trips.
switch = deployment_task("switch", time_limit=420)(lifecycle.switch)
migrate_cdc = deployment_task("migrate_cdc", time_limit=120)(lifecycle.migrate_cdc)
monitor = deployment_task("monitor", time_limit=60)(lifecycle.monitor)

CHAIN = (prepare, wait_for_sync, validate, switch, migrate_cdc, monitor)
