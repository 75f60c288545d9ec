"""An application instance's part in maintenance mode: announce itself, and on "enter" drain and
acknowledge; on "exit" resume (reconnecting to the new writer).

``MaintenanceParticipant(redis, cluster, drain=…, resume=…)`` runs a small thread: it renews the
instance's announcement (a heartbeat), listens on the cluster's maintenance channel (a signal to
re-read the state; the state itself is read from its key, so a message lost while disconnected is
caught up on the next poll), and for each new epoch's "enter" calls ``drain()`` — which returns
once no transaction is in flight and the pooled connections are closed — then acknowledges. A
repeated "enter" of the same deployment and epoch is acknowledged again without draining twice;
an older epoch of a deployment already handled (a worker that lost it) is ignored. An "enter"
older than its hold bound (``hold_s``, set by the switchover from its own timeouts) is treated as
an "exit": a worker that died mid-procedure never holds the application for good.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis

from bgqueue.adapters.routing.maintenance import ENTER, EXIT, Maintenance

log = logging.getLogger("bgqueue.client.maintenance")

POLL_S = 0.25


class MaintenanceParticipant:
    def __init__(self, client: redis.Redis, cluster: str, *, drain: Callable[[], None], resume: Callable[[], None],
                 client_id: str | None = None, announce_ttl_s: float = 10.0, namespace: str | None = None):
        self.maint = Maintenance(client, namespace=namespace)
        self.redis, self.cluster = client, cluster
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._drain, self._resume = drain, resume
        self.announce_ttl_s = announce_ttl_s
        self.handled: tuple[str, int] | None = None  # (deployment, epoch) of the last "enter" drained
        self.in_maintenance = False
        self.drains = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bgq-maint-{cluster}", daemon=True)
        self.maint.announce(cluster, self.client_id, announce_ttl_s)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        try:
            self.maint.withdraw(self.cluster, self.client_id)
        except redis.RedisError:
            pass

    def _run(self) -> None:
        pubsub = None
        renew_every = self.announce_ttl_s / 3
        renewed = 0.0
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.maint.channel(self.cluster))
                self.poll()
                now = time.monotonic()
                if now - renewed >= renew_every:
                    self.maint.announce(self.cluster, self.client_id, self.announce_ttl_s)
                    renewed = now
                pubsub.get_message(timeout=POLL_S)  # wakes early on a signal; the state is re-read above
            except redis.RedisError as e:
                log.warning("maintenance: Redis unavailable (%s); retrying", e)
                pubsub = None
                self._stop.wait(0.5)
        if pubsub is not None:
            try:
                pubsub.close()
            except redis.RedisError:
                pass

    def poll(self) -> None:
        """Act on the current state once (the thread calls this; tests may too)."""
        state = self.maint.state(self.cluster)
        if state is None:
            return
        epoch, deployment = int(state.get("epoch", 0)), str(state.get("deployment", ""))
        if self.handled is not None and self.handled[0] == deployment and epoch < self.handled[1]:
            return  # stale: from a worker that lost this deployment to a newer epoch
        if state["state"] == ENTER and Maintenance.expired(state):
            if self.in_maintenance:
                log.warning("maintenance: %s epoch %s held clients past its bound; resuming", deployment, epoch)
                self.in_maintenance = False
                self._resume()
            return
        if state["state"] == ENTER:
            if self.handled != (deployment, epoch):
                self.in_maintenance = True
                self._drain()
                self.drains += 1
                self.handled = (deployment, epoch)
            self.maint.acknowledge(self.cluster, epoch, self.client_id)
        elif state["state"] == EXIT and self.in_maintenance:
            self.in_maintenance = False
            self._resume()
