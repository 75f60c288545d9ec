"""Which clusters a sampler process samples, and which deployment (and phase) each belongs to.

Two sources: the store (every deployment whose phase is not terminal; read-only queries), or an
explicit list of cluster specs (``bgqueue sampler run --fleet FILE``, the bench), optionally
joined with the store to learn their in-flight deployments. Both can be sharded across sampler
processes: ``shard=(i, n)`` keeps the clusters whose stable hash modulo n is i.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import Deployment
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import TERMINAL

log = logging.getLogger(__name__)

Shard = tuple[int, int]


@dataclass(frozen=True)
class Target:
    """One cluster to sample; ``deployment_id``/``phase`` are None when none is in flight."""

    spec: ClusterSpec
    deployment_id: str | None = None
    phase: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def shard_of(cluster: str, n: int) -> int:
    """Stable across processes and hosts (crc32, not Python's salted hash)."""
    return zlib.crc32(cluster.encode()) % n


def in_shard(cluster: str, shard: Shard | None) -> bool:
    return shard is None or shard_of(cluster, shard[1]) == shard[0]


def parse_shard(text: str | Shard | None) -> Shard | None:
    """"i/n" (or a tuple) → (i, n) with 0 <= i < n; BadInput otherwise."""
    if text is None or isinstance(text, tuple):
        shard = text
    else:
        try:
            i, n = (int(p) for p in str(text).split("/"))
        except ValueError:
            raise BadInput(f"shard {text!r}: expected i/n, e.g. 0/4") from None
        shard = (i, n)
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise BadInput(f"shard {shard[0]}/{shard[1]}: need 0 <= i < n")
    return shard


class TargetSource:
    """``load()`` returns the current targets of this shard, sorted by cluster name.

    With ``clusters`` the list is fixed (and the store, if given, only adds deployment ids and
    phases); without, it is every non-terminal deployment in ``store``.
    """

    def __init__(self, store: Store | None = None, clusters: Iterable[ClusterSpec] | None = None,
                 shard: Shard | None = None):
        if store is None and clusters is None:
            raise ValueError("TargetSource needs a store, a cluster list, or both")
        self.store = store
        self.clusters = None if clusters is None else [c for c in clusters if in_shard(c.name, shard)]
        self.shard = shard
        self._specs: dict[str, ClusterSpec | None] = {}  # deployment id → validated spec (immutable)

    def load(self) -> list[Target]:
        active = self._active() if self.store is not None else {}
        if self.clusters is not None:
            out = []
            for spec in self.clusters:
                dep = active.get(spec.name)
                out.append(Target(spec, dep[0], dep[1]) if dep else Target(spec))
            return sorted(out, key=lambda t: t.name)
        return sorted((Target(spec, dep_id, phase) for dep_id, phase, spec in active.values() if spec is not None),
                      key=lambda t: t.name)

    def _active(self) -> dict[str, tuple[str, str, ClusterSpec | None]]:
        """cluster → (deployment id, phase, spec) of its newest non-terminal deployment in this shard."""
        assert self.store is not None
        q = (select(Deployment.id, Deployment.cluster, Deployment.phase, Deployment.spec)
             .where(Deployment.phase.not_in([p.value for p in TERMINAL]))
             .order_by(Deployment.created_at))
        if self.clusters is not None:
            q = q.where(Deployment.cluster.in_([c.name for c in self.clusters]))
        out: dict[str, tuple[str, str, ClusterSpec | None]] = {}
        with self.store.session() as s:
            for dep_id, cluster, phase, raw in s.execute(q):
                if in_shard(cluster, self.shard):
                    out[cluster] = (dep_id, phase, self._spec(dep_id, raw))  # newest wins
        return out

    def _spec(self, dep_id: str, raw: dict) -> ClusterSpec | None:
        if dep_id not in self._specs and raw.get("provider") != "mysql":
            self._specs[dep_id] = None  # only the mysql provider's servers are sampled over SQL
        if dep_id not in self._specs:
            try:
                self._specs[dep_id] = ClusterSpec.model_validate(raw)
            except ValidationError as e:
                log.warning("deployment %s: stored cluster spec is not valid, not sampled: %s",
                            dep_id, e.errors()[0].get("msg"))
                self._specs[dep_id] = None
        return self._specs[dep_id]
