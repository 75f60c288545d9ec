"""Maintenance mode over Redis: bgqueue's side (enter, wait for acknowledgements, exit) and the
application's side (announce, read the state, acknowledge).

Keys, in the environment's namespace like the routes (``bgq:{ns}:maint:{cluster}``; Redis
pub/sub ignores database numbers, so two environments sharing a Redis server stay apart):
``maint:{cluster}`` holds the state as JSON ``{"state": "enter"|"exit",
"epoch", "deployment", "at"}`` and the channel of the same name carries a signal to re-read it;
``maint:{cluster}:clients`` maps each registered application instance to the time its
announcement expires; ``maint:{cluster}:acks:{epoch}`` maps instances to when they acknowledged
that epoch's "enter". An epoch is the deployment's fencing epoch: a client ignores an older one.
"""
from __future__ import annotations

import json
import time

import redis

from bgqueue.adapters.routing.route import check_namespace
from config.settings import get_settings

ENTER, EXIT = "enter", "exit"
ACK_TTL_S = 24 * 3600
# How long an "enter" holds clients at most when the state says nothing (older writers).
DEFAULT_HOLD_S = 300.0
HOLD_BOUNDS_S = (10.0, 3600.0)


class Maintenance:
    def __init__(self, client: redis.Redis, prefix: str = "bgq:", *, namespace: str | None = None):
        """``namespace``: the environment's (default: the BGQUEUE_NAMESPACE setting)."""
        self.redis, self.prefix = client, prefix
        self.namespace = check_namespace(namespace if namespace is not None else get_settings().namespace)

    def key(self, cluster: str) -> str:
        return f"{self.prefix}{self.namespace}:maint:{cluster}"

    channel = key

    def _clients(self, cluster: str) -> str:
        return f"{self.key(cluster)}:clients"

    def _acks(self, cluster: str, epoch: int) -> str:
        return f"{self.key(cluster)}:acks:{epoch}"

    # --- bgqueue's side ---------------------------------------------------------------------
    def enter(self, cluster: str, epoch: int, deployment: str, hold_s: float = DEFAULT_HOLD_S) -> None:
        """``hold_s``: the longest the procedure can keep the clients drained; past it a client
        resumes on its own (a worker that died mid-procedure never holds applications for good)."""
        hold = min(max(float(hold_s), HOLD_BOUNDS_S[0]), HOLD_BOUNDS_S[1])
        self._set(cluster, {"state": ENTER, "epoch": epoch, "deployment": deployment, "at": time.time(),
                            "hold_s": hold})

    def exit(self, cluster: str, epoch: int, deployment: str) -> None:
        self._set(cluster, {"state": EXIT, "epoch": epoch, "deployment": deployment, "at": time.time()})

    def _set(self, cluster: str, state: dict) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self.key(cluster), json.dumps(state))
        pipe.publish(self.channel(cluster), state["state"])
        pipe.execute()

    def registered(self, cluster: str) -> list[str]:
        """Instances whose announcement has not expired."""
        now = time.time()
        return sorted(c for c, until in self.redis.hgetall(self._clients(cluster)).items() if float(until) > now)

    def acknowledged(self, cluster: str, epoch: int) -> set[str]:
        return set(self.redis.hkeys(self._acks(cluster, epoch)))

    # --- the application's side -------------------------------------------------------------
    def announce(self, cluster: str, client_id: str, ttl_s: float) -> None:
        self.redis.hset(self._clients(cluster), client_id, str(time.time() + ttl_s))

    def withdraw(self, cluster: str, client_id: str) -> None:
        self.redis.hdel(self._clients(cluster), client_id)

    def state(self, cluster: str) -> dict | None:
        raw = self.redis.get(self.key(cluster))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) and value.get("state") in (ENTER, EXIT) else None

    @staticmethod
    def expired(state: dict, now: float | None = None) -> bool:
        """An "enter" older than its hold bound: clients resume without waiting for "exit"."""
        try:
            at = float(state.get("at", 0))
            hold = min(max(float(state.get("hold_s", DEFAULT_HOLD_S)), HOLD_BOUNDS_S[0]), HOLD_BOUNDS_S[1])
        except (TypeError, ValueError):
            return True
        return (time.time() if now is None else now) - at > hold

    def acknowledge(self, cluster: str, epoch: int, client_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._acks(cluster, epoch), client_id, str(time.time()))
        pipe.expire(self._acks(cluster, epoch), ACK_TTL_S)
        pipe.execute()
