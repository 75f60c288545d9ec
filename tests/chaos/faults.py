"""Faults injected at random moments of a round (each returns what it did, for the report).

kill_child / kill_parent   SIGKILL of a worker's pool child / parent (the parent is restarted by the
                           world's restart policy; its orphaned children are killed at the round's end)
host_lost                  every process of one host SIGKILLed and its link cut, until the round ends
pause                      the worker that owns a switchover (else a random one) SIGSTOPped until another
                           worker took the deployment over (or 45 s), then SIGCONT
redis_restart              redis-server SIGKILLed and started again, empty
pg_restart                 the store's PostgreSQL shut down immediately (as a crash) and started again
partition                  the host that runs a switchover cut from that cluster's blue or green
                           (a blackhole route in its namespace) for 3-10 s, then healed
pause_in_fence             a worker paused with blue fenced (the armed failpoint switchover.after_fence
                           stops the first child that gets there), SIGCONT once another worker took over
kill_after_promote         a worker child dead with green promoted and the route not flipped yet
                           (switchover.after_promote, exit-once): the write-blocked window's worst case
Random moments cannot aim at the ~50 ms fence → flip window; the last two do, at its two ends.
"""
from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.world import World

FAULTS = ("kill_child", "kill_parent", "host_lost", "pause", "redis_restart", "pg_restart", "partition",
          "pause_in_fence", "kill_after_promote")
# A fault that is not tied to a switchover strikes soon after some deployment entered one of these
# phases (drawn at random), or WINDOW_S[1] after the batch was enqueued if none did.
STRIKE_PHASES = ("PENDING", "PREPARING", "SYNCING", "VALIDATING", "READY", "SWITCHING", "CDC_MIGRATING", "MONITORING")
WINDOW_S = (0.5, 8.0)


@dataclass
class Injected:
    kind: str
    at_s: float = 0.0  # after the batch was enqueued
    detail: dict = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def undo(self) -> None:
        while self.cleanup:
            try:
                self.cleanup.pop()()
            except Exception as e:  # the report says so; the world tears down what is left
                self.detail.setdefault("cleanup_errors", []).append(repr(e))


def _live_workers(world: World) -> list[tuple[int, object]]:
    return [(i, w) for i, w in world.workers.items()
            if i not in world.down and w.proc is not None and w.proc.poll() is None]


def _kill_orphans(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _owner_worker(world: World, owner: str | None):
    """The (host index, worker) whose process recorded itself as a deployment's owner (host:pid)."""
    if not owner or ":" not in owner:
        return None
    try:
        pid = int(owner.rsplit(":", 1)[1])
    except ValueError:
        return None
    return world.worker_of_pid(pid)


def inject(world: World, kind: str, rng: random.Random, t0: float, store, clusters: dict[str, object],
           stop: Callable[[], bool]) -> Injected:
    """Strike once during the round that started at ``t0`` (monotonic). ``store``: a StoreReader;
    ``clusters``: name -> ClusterPair; ``stop()``: the round is over (give up waiting)."""
    inj = Injected(kind)

    def wait_switching(timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop():
            for d in store.deployments():
                if d["phase"] == "SWITCHING":
                    return d
            time.sleep(0.01)
        return None

    def live_phases() -> dict[str, int]:
        out: dict[str, int] = {}
        for d in store.deployments():
            out[d["phase"]] = out.get(d["phase"], 0) + 1
        return out

    if kind in ("kill_child", "kill_parent", "host_lost", "redis_restart", "pg_restart"):
        # A random moment of the batch: soon after some deployment entered a phase drawn at random.
        target = rng.choice(STRIKE_PHASES)
        deadline = time.monotonic() + WINDOW_S[1]
        while time.monotonic() < deadline and not stop():
            if any(d["phase"] == target for d in store.deployments()):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        inj.at_s = round(time.monotonic() - t0, 2)
        inj.detail["phases_at_strike"] = live_phases()
        inj.detail["target_phase"] = target
        if kind in ("kill_child", "kill_parent"):
            index, w = rng.choice(_live_workers(world))
            children = w.child_pids()
            if kind == "kill_child" and children:
                pid = rng.choice(children)
            else:
                pid = w.proc.pid
                inj.cleanup.append(lambda c=children: _kill_orphans(c))
            os.kill(pid, signal.SIGKILL)
            inj.detail.update(host=index, pid=pid)
        elif kind == "host_lost":
            index = rng.choice([i for i, _ in _live_workers(world)])
            world.host_down(index)
            inj.detail["host"] = index
            inj.cleanup.append(lambda: world.host_up(index))
        elif kind == "redis_restart":
            world.restart_redis()
        else:
            world.restart_postgres()
        return inj

    if kind in ("pause_in_fence", "kill_after_promote"):
        point = "switchover.after_fence" if kind == "pause_in_fence" else "switchover.after_promote"
        world.arm(point)
        inj.cleanup.append(lambda: world.disarm(point))
        if kind == "kill_after_promote":
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not stop():
                if not (world.failpoint_dir / f"failpoint.{point}").exists():
                    time.sleep(0.05)
                    continue
                inj.at_s = round(time.monotonic() - t0, 2)
                inj.detail["fired"] = True
                break
            inj.detail["phases_at_strike"] = live_phases()
            return inj
        stopped = None
        deadline = time.monotonic() + 40
        while stopped is None and time.monotonic() < deadline and not stop():
            for index, w in _live_workers(world):
                for pid in w.child_pids():
                    if _state(pid) == "T":
                        stopped = (index, pid)
            time.sleep(0.02)
        if stopped is None:
            inj.detail["fired"] = False
            return inj
        inj.at_s = round(time.monotonic() - t0, 2)
        index, pid = stopped
        switching = {d["id"]: d["epoch"] for d in store.deployments() if d["phase"] == "SWITCHING"}
        inj.cleanup.append(lambda: os.kill(pid, signal.SIGCONT))
        paused = time.monotonic()
        taken_over = False
        while time.monotonic() - paused < 45:
            now = {d["id"]: d for d in store.deployments()}
            if switching and all(now.get(i, {}).get("epoch", e) > e for i, e in switching.items()):
                taken_over = True
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the new owner goes on; then the old one wakes up
        inj.detail.update(fired=True, host=index, pid=pid, paused_s=round(time.monotonic() - paused, 1),
                          taken_over=taken_over, phases_at_strike=live_phases())
        inj.undo()
        return inj

    dep = wait_switching(WINDOW_S[1] + 20)
    inj.at_s = round(time.monotonic() - t0, 2)
    found = _owner_worker(world, dep["owner"]) if dep else None
    if found is None:
        found = rng.choice(_live_workers(world))
    index, w = found
    inj.detail = {"host": index, "during_switchover": dep is not None, "cluster": dep["cluster"] if dep else None,
                  "phases_at_strike": live_phases()}
    if kind == "pause":
        pgid = w.proc.pid
        os.killpg(pgid, signal.SIGSTOP)
        inj.cleanup.append(lambda: os.killpg(pgid, signal.SIGCONT))
        paused = time.monotonic()
        taken_over = False
        while time.monotonic() - paused < 45:
            if dep is None:
                if time.monotonic() - paused > 15:
                    break
            else:
                now = store.deployment(dep["id"])
                if now is not None and (now["epoch"] > dep["epoch"]):
                    taken_over = True
                    time.sleep(1.0)  # the new owner goes on; then the old one wakes up
                    break
            time.sleep(0.2)
        inj.detail.update(paused_s=round(time.monotonic() - paused, 1), taken_over=taken_over)
        inj.undo()
        return inj
    # partition
    cluster = dep["cluster"] if dep else rng.choice(sorted(clusters))
    side = rng.choice(["blue", "green"])
    server = getattr(clusters[cluster], side)
    h = world.net.host(index)
    world.net.partition(h, server.host)
    inj.cleanup.append(lambda: world.net.heal(h, server.host))
    held = rng.uniform(3.0, 10.0)
    time.sleep(held)
    inj.detail.update(cluster=cluster, side=side, held_s=round(held, 1))
    inj.undo()
    return inj
