"""What the routed client's errors mean: the outcome classes an application sees, and the MySQL
error numbers that decide between "retry", "the session is gone" and "give up"."""
from __future__ import annotations

import pymysql

from bgqueue.model.errors import BgqueueError

# The server refused a write because it is read_only: nothing of the transaction committed.
ER_READ_ONLY = 1290
# The connection is gone; whatever was not committed was rolled back by the server.
CONNECTION_ERRORS = frozenset({
    2003,  # can't connect
    2006,  # server gone away
    2013,  # lost connection during query
    1927,  # connection was killed
    1053,  # server shutdown in progress
    4031,  # disconnected by the server (idle timeout)
})
# Worth waiting for while a lost COMMIT is being verified: the server refused the session or the
# read for now (too many connections, lock wait, deadlock), it did not answer the question.
TRANSIENT_WHILE_VERIFYING = frozenset({1040, 1205, 1213})
ER_DUP_ENTRY = 1062


class WriteUnavailable(BgqueueError):
    """The transaction did not commit within the attempt/deadline budget. ``last_error`` says why."""

    def __init__(self, message: str, last_error: BaseException | None):
        super().__init__(message)
        self.last_error = last_error


class CommitOutcomeUnknown(BgqueueError):
    """The connection died while COMMIT was in flight: the transaction may or may not have committed."""

    def __init__(self, message: str, last_error: BaseException | None):
        super().__init__(message)
        self.last_error = last_error


class NoRoute(BgqueueError):
    """The registry names no writer for the cluster (yet)."""


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number carried by a PyMySQL exception, if any."""
    if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the session is gone (not a refusal by a live server)."""
    if isinstance(exc, pymysql.err.InterfaceError):  # "(0, '')": already closed
        return True
    return error_code(exc) in CONNECTION_ERRORS
