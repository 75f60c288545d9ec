"""Deployment phases and the one table of allowed transitions.

One deployment = one cluster in one batch. The lifecycle on one screen:

    PENDING → PREPARING → SYNCING → VALIDATING → (PILOTING) → READY → SWITCHING
            → CDC_MIGRATING → MONITORING → COMPLETED
    side exits: NO_GO (nothing changed), SWITCHOVER_FAILED (fence undone, blue still primary),
                ROLLING_BACK → ROLLED_BACK, FAILED (needs a human; reason recorded)
"""
from __future__ import annotations

from enum import StrEnum

from bgqueue.model.errors import IllegalTransition


class Phase(StrEnum):
    PENDING = "PENDING"
    PREPARING = "PREPARING"
    SYNCING = "SYNCING"
    VALIDATING = "VALIDATING"
    PILOTING = "PILOTING"
    READY = "READY"
    SWITCHING = "SWITCHING"
    CDC_MIGRATING = "CDC_MIGRATING"
    MONITORING = "MONITORING"
    COMPLETED = "COMPLETED"
    NO_GO = "NO_GO"
    SWITCHOVER_FAILED = "SWITCHOVER_FAILED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"


P = Phase

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.PENDING: frozenset({P.PREPARING, P.NO_GO, P.FAILED}),
    P.PREPARING: frozenset({P.SYNCING, P.NO_GO, P.FAILED}),
    P.SYNCING: frozenset({P.VALIDATING, P.NO_GO, P.FAILED}),
    P.VALIDATING: frozenset({P.PILOTING, P.READY, P.NO_GO, P.FAILED}),
    P.PILOTING: frozenset({P.READY, P.NO_GO, P.FAILED}),
    P.READY: frozenset({P.SWITCHING, P.NO_GO, P.FAILED}),
    P.SWITCHING: frozenset({P.CDC_MIGRATING, P.SWITCHOVER_FAILED, P.FAILED}),
    P.CDC_MIGRATING: frozenset({P.MONITORING, P.ROLLING_BACK, P.FAILED}),
    P.MONITORING: frozenset({P.COMPLETED, P.ROLLING_BACK, P.FAILED}),
    P.COMPLETED: frozenset({P.ROLLING_BACK}),  # manual rollback during the retention period
    # Back to where it was when a rollback was undone safely (fence lifted, green still primary).
    P.ROLLING_BACK: frozenset({P.ROLLED_BACK, P.FAILED, P.CDC_MIGRATING, P.MONITORING, P.COMPLETED}),
    P.NO_GO: frozenset(),
    P.SWITCHOVER_FAILED: frozenset(),
    P.ROLLED_BACK: frozenset(),
    P.FAILED: frozenset(),
}

# Phases after which the batch no longer waits for the deployment.
TERMINAL: frozenset[Phase] = frozenset({P.COMPLETED, P.NO_GO, P.SWITCHOVER_FAILED, P.ROLLED_BACK, P.FAILED})

# Phases in which servers may be mid-change: a crash here needs observation before anything else.
SERVER_CHANGING: frozenset[Phase] = frozenset({P.SWITCHING, P.ROLLING_BACK})

# Phases in which green has taken over as the writer.
SWITCHED: frozenset[Phase] = frozenset({P.CDC_MIGRATING, P.MONITORING, P.COMPLETED})


def check_transition(current: Phase | str, target: Phase | str) -> None:
    """Raise IllegalTransition unless the table allows current → target."""
    cur, tgt = Phase(current), Phase(target)
    if tgt not in TRANSITIONS[cur]:
        allowed = ", ".join(sorted(TRANSITIONS[cur])) or "nothing (terminal)"
        raise IllegalTransition(f"{cur} → {tgt} is not allowed; from {cur} only: {allowed}")


def is_terminal(phase: Phase | str) -> bool:
    return Phase(phase) in TERMINAL
