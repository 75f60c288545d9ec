"""``bgqueue cdc run``: the long-lived process that runs every built-in (binlog) pipeline of a fleet.

One thread per pipeline (``BinlogConsumer``) and one route watcher that subscribes to the route
channels of the fleet's clusters and wakes the consumers of a cluster the moment its writer
flips. Stops on SIGTERM/SIGINT (or when ``stop_event`` is set), after each consumer stored what
it delivered.

    python -m bgqueue.app.cdc_runner [--fleet FILE] [--only C1,C2]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections import defaultdict

import redis

from bgqueue.adapters.cdc.consumer import BinlogConsumer
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.runtime import Runtime, get_runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.model.cdc import BinlogPipeline
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import ClusterSpec, check_credentials, load_fleet

log = logging.getLogger(__name__)
JOIN_TIMEOUT_S = 15.0


class RouteWatcher(threading.Thread):
    """Sets each cluster's events when a message arrives on its route channel (of this
    environment's namespace). A message is only a wake-up: the consumers read the route again."""

    def __init__(self, client: redis.Redis, events: dict[str, list[threading.Event]], stop,
                 registry: RoutingRegistry | None = None):
        super().__init__(name="bgq-cdc-routes", daemon=True)
        self.client, self.events, self.stop = client, events, stop
        self.registry = registry or RoutingRegistry(client)

    def run(self) -> None:
        channels = {self.registry.channel(c): c for c in self.events}
        while not self.stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*channels)
                self._wake_all()  # a flip while we were not subscribed is then seen too
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message and message.get("type") == "message":
                        cluster = channels.get(message["channel"])
                        for event in self.events.get(cluster, ()):
                            event.set()
            except (redis.RedisError, OSError) as e:
                log.warning("cdc: route watcher lost Redis, retrying: %r", e)
                self.stop.wait(1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _wake_all(self) -> None:
        for events in self.events.values():
            for event in events:
                event.set()


def resolve_fleet_path(runtime: Runtime, fleet_path: str | None) -> str:
    """The fleet file given, else the one of the most recent batch in the store."""
    if fleet_path:
        return str(fleet_path)
    recent = deps.recent_batches(runtime.store, 1)
    if not recent:
        raise BadInput("no fleet file given and no batch in the store to take it from: "
                       "bgqueue cdc run --fleet FILE")
    return recent[0].fleet_path


def binlog_pipelines(specs: list[ClusterSpec]) -> list[tuple[ClusterSpec, BinlogPipeline]]:
    """Every (cluster, pipeline) that the built-in consumer runs."""
    return [(s, p) for s in specs for p in s.pipelines if isinstance(p, BinlogPipeline)]


def run_consumers(runtime: Runtime, fleet_path: str | None = None, stop_event=None, *, only: list[str] | None = None,
                  ready: threading.Event | None = None) -> int:
    """Run every binlog pipeline of the fleet until ``stop_event`` is set (or SIGTERM/SIGINT when
    no event is given and this is the main thread). Returns 0.

    ``runtime`` (built by the caller, the composition root) gives Redis and, when no fleet file is
    given, the store. Raises BadInput (exit 2) for a bad fleet file, a missing password variable or a
    fleet with no binlog pipeline. ``ready`` is set once every consumer thread has started.
    """
    path = resolve_fleet_path(runtime, fleet_path)
    fleet = load_fleet(path)
    specs = fleet.select(only)
    check_credentials(fleet, path, specs)
    jobs = binlog_pipelines(specs)
    if not jobs:
        raise BadInput(f"{path}: no binlog pipeline in the selected clusters (pipelines: - kind: binlog)")
    stop = stop_event if stop_event is not None else threading.Event()
    if stop_event is None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    client = runtime.redis
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    events: dict[str, list[threading.Event]] = defaultdict(list)
    threads = []
    for spec, pipeline in jobs:
        flag = threading.Event()
        events[spec.name].append(flag)
        consumer = BinlogConsumer(spec, pipeline, client, stop=stop, owner=owner, route_changed=flag,
                                  connect_timeout=spec.thresholds.connect_timeout_s, routing=runtime.routing)
        threads.append(threading.Thread(target=consumer.run, name=f"bgq-cdc-{spec.name}-{pipeline.name}",
                                        daemon=True))
    watcher = RouteWatcher(client, dict(events), stop, runtime.routing)
    watcher.start()
    for t in threads:
        t.start()
    log.info("cdc: %d pipeline(s) running: %s", len(jobs),
             ", ".join(f"{s.name}/{p.name} -> {p.stream_key(s.name)}" for s, p in jobs))
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set() and any(t.is_alive() for t in threads):
            stop.wait(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT_S)
        watcher.join(2.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m bgqueue.app.cdc_runner``); the same as ``bgqueue cdc run``."""
    ap = argparse.ArgumentParser(prog="bgqueue cdc run", description="run the fleet's built-in CDC consumers")
    ap.add_argument("--fleet", help="fleet file (default: the one of the most recent batch)")
    ap.add_argument("--only", help="comma-separated cluster names")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_consumers(get_runtime(), args.fleet, only=args.only.split(",") if args.only else None)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
