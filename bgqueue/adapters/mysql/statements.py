"""What bgqueue may record about another session's statement: its kind and a digest, never its text.

Statement text seen on a server (the processlist's INFO, a replica's Last_SQL_Error) can carry
secrets (``ALTER USER … IDENTIFIED BY '…'``, a password in an INSERT) and whatever bgqueue records
reaches the store, the result backend, ``bgqueue status`` and the report. The kind (leading
keywords from fixed lists) and the digest of the statement's shape (literals replaced, so the
digest cannot be matched against guessed passwords) are enough to tell statements apart and to
find one in the server's own logs.
"""
from __future__ import annotations

import hashlib
import re

# Quoted strings (with '' and backslash escapes), hex/bit literals and numbers: the values of a statement.
_LITERALS = re.compile(r"'(?:[^'\\]|\\.|'')*'?|\"(?:[^\"\\]|\\.|\"\")*\"?|\b(?:0x[0-9a-f]+|[0-9]+(?:\.[0-9]+)?)\b",
                       re.I)
_COMMENTS = re.compile(r"/\*.*?(?:\*/|$)|(?:--\s|#).*?$", re.S | re.M)
# The kind is drawn from these words only: whatever else a session sent (a secret, say) is never copied.
_VERBS = frozenset("""ALTER ANALYZE BACKUP BEGIN CALL CHANGE CHECK CHECKSUM COMMIT CREATE DEALLOCATE DELETE DESCRIBE
    DO DROP EXECUTE EXPLAIN FLUSH GRANT HANDLER INSERT INSTALL KILL LOAD LOCK OPTIMIZE PREPARE PURGE RELEASE RENAME
    REPAIR REPLACE RESET REVOKE ROLLBACK SAVEPOINT SELECT SET SHOW START STOP TRUNCATE UNINSTALL UNLOCK UPDATE USE
    WITH XA""".split())
_OBJECTS = frozenset("""DATABASE DEFINER EVENT FULLTEXT FUNCTION INDEX ONLINE OR PASSWORD PROCEDURE ROLE SCHEMA
    SEQUENCE SERVER SPATIAL TABLE TABLES TABLESPACE TEMPORARY TRIGGER UNIQUE USER VIEW""".split())


def statement_kind(text: str) -> str:
    """The statement's verb and, for DDL, its object (``ALTER USER``, ``ALTER TABLE``, ``SELECT``),
    taken from fixed keyword lists; ``?`` when it does not start with a known verb."""
    words = [w.upper() for w in _COMMENTS.sub(" ", text or "").split()[:2]]
    if not words or words[0] not in _VERBS:
        return "?"
    if len(words) > 1 and words[1] in _OBJECTS:
        return f"{words[0]} {words[1]}"
    return words[0]


def statement_digest(text: str) -> str:
    """sha256 (16 hex digits) of the statement's shape: comments dropped, literals as ``?``,
    whitespace collapsed, lower case. Never of the text itself (it could be brute-forced)."""
    shape = _LITERALS.sub("?", _COMMENTS.sub(" ", text or ""))
    shape = " ".join(shape.lower().split())
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def describe_statement(info: str | None) -> str:
    """``KIND (digest …)``: what evidence and messages say about a statement."""
    return f"{statement_kind(info or '')} (digest {statement_digest(info or '')})"

# MariaDB / MySQL replication errors quote the failing statement: "... Query: '<text>'".
_QUERY_IN_ERROR = re.compile(r"(Query:\s*)'(.*)'(?=\s*$)", re.S)


def redact_statements(message: str) -> str:
    """A server message with any quoted statement replaced by its kind and digest."""
    return _QUERY_IN_ERROR.sub(lambda m: m.group(1) + describe_statement(m.group(2)), message or "")
