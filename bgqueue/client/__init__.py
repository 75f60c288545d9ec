"""What applications embed: a client that follows the cluster's writer across switchovers.

``from bgqueue.client import RoutedClient`` is the public entry point; the modules beside this
one are the routed client itself (``routed``), the test/demo writer with its ledger (``writer``)
and the workload harness (``workload``, ``audit``).
"""
from bgqueue.client.routed import (
    CommitOutcomeUnknown,
    NoRoute,
    RoutedClient,
    WriteUnavailable,
    error_code,
    is_connection_error,
)

__all__ = ["CommitOutcomeUnknown", "NoRoute", "RoutedClient", "WriteUnavailable", "error_code",
           "is_connection_error"]
