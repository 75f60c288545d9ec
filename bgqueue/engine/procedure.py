"""Procedures as explicit steps, each with its undo beside it (execute/revert, as in TaskFlow).

A procedure is a list of ``Step``s. ``run_steps`` journals each one and lets ``FencedOut`` pass
(another worker owns the deployment: it must not be disturbed). What a failing step leads to is
the step's ``on_error``:
  ``undo``      (before the point of no return) run the undo of every step done so far, and of
                the failed one (it may have half-happened), newest first;
  ``stop``      (past it) end the run as it stands: nothing is undone;
  ``continue``  a finding; the run goes on;
  ``raise``     the error leaves the procedure (the caller's resume path takes over).
A step says it failed by raising ``StepFailed`` (journaled with its facts).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bgqueue.adapters.store.journal import Journal, StepFailed
from bgqueue.model.errors import FencedOut

__all__ = ["CannotUndo", "Step", "StepFailed", "RunResult", "run_steps"]


class CannotUndo(Exception):
    """Raised by an undo that finds the change cannot be undone (state needs a human)."""


@dataclass(frozen=True)
class Step:
    name: str
    do: Callable[[dict[str, Any]], None]
    # Compensation, given the failure's reason; journaled as its own step (``undo_name``).
    undo: Callable[[str], None] | None = None
    undo_name: str = ""
    # "undo" | "stop" | "continue" | "raise", or a function of the error that says which.
    on_error: str | Callable[[Exception], str] = "undo"
    explain: Callable[[Exception], str] | None = None  # the reason for an unexpected error
    eager: bool = False  # journal 'started' at once, also inside a deferred journal

    def reaction(self, e: Exception) -> str:
        return self.on_error(e) if callable(self.on_error) else self.on_error


@dataclass
class RunResult:
    done: list[str] = field(default_factory=list)
    failed: str | None = None  # the step that ended the run
    reason: str = ""
    undone: bool = False  # every done step was compensated: nothing changed in the end
    findings: list[str] = field(default_factory=list)  # failures of best-effort steps

    @property
    def ok(self) -> bool:
        return self.failed is None


def _reason(step: Step, e: Exception) -> str:
    if isinstance(e, StepFailed):
        return str(e)
    return step.explain(e) if step.explain else f"{type(e).__name__} in {step.name}: {e}"


def run_steps(journal: Journal, steps: list[Step]) -> RunResult:
    """Run ``steps`` in order; see the module docstring for failures. Never raises but FencedOut."""
    result = RunResult()
    ran: list[Step] = []
    for step in steps:
        try:
            with journal.step(step.name, eager=step.eager) as facts:
                step.do(facts)
        except FencedOut:
            raise
        except Exception as e:  # noqa: BLE001 — every failure becomes an outcome
            reaction = step.reaction(e)
            if reaction == "raise":
                raise
            reason = _reason(step, e)
            if reaction == "continue":
                result.findings.append(reason)
                continue
            result.failed, result.reason = step.name, reason
            if reaction == "undo":
                result.undone, result.reason = _compensate(journal, [*ran, step], reason)
            return result
        ran.append(step)
        result.done.append(step.name)
    return result


def _compensate(journal: Journal, ran: list[Step], reason: str) -> tuple[bool, str]:
    """Undo newest first. Returns (undone, reason as reported)."""
    for step in reversed(ran):
        if step.undo is None:
            continue
        try:
            with journal.step(step.undo_name or f"undo_{step.name}", reason=reason):
                step.undo(reason)
        except FencedOut:
            raise
        except CannotUndo as e:
            return False, str(e)
        except Exception as e:  # noqa: BLE001
            return False, f"{reason}; undoing {step.name} failed too: {e}"
    return True, reason
