"""Errors that carry their meaning to the operator (and to the CLI's exit code)."""
from __future__ import annotations


class BgqueueError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(BgqueueError):
    """The input is wrong (file, names, credentials, reachability); nothing was changed."""

    exit_code = 2


class ClusterBusy(BgqueueError):
    """Another operation holds the cluster; nothing was changed."""

    exit_code = 1


class IllegalTransition(BgqueueError):
    """A phase change that the transition table does not allow."""


class FencedOut(BgqueueError):
    """Another worker owns the deployment now (epoch or phase moved on); stop quietly."""


class ProcedureFailed(BgqueueError):
    """A server-changing procedure could not complete; the deployment records where it stopped."""
