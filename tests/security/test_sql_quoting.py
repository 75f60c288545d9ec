"""Issue 11, item 4: no hand-quoted SQL. CHANGE MASTER gets its host, user, password and CA file
through the driver's escaping, which follows the session's NO_BACKSLASH_ESCAPES.

Attack tried: values that close the string literal and comment out the rest of the statement.
Under NO_BACKSLASH_ESCAPES hand quoting turned ``'`` into ``\\'``, which that mode reads as a
backslash and the end of the string: a host, user or password ``x' , MASTER_PORT=1 -- `` set
another port and dropped everything after it (user, password, MASTER_USE_GTID, MASTER_SSL and
its verification: the same payload with ``MASTER_SSL=0`` turns TLS off). Each statement must
either apply exactly the values given (read back from SHOW SLAVE STATUS and master.info) or be
refused.
"""
from __future__ import annotations

import pytest

from bgqueue.adapters.mysql.server import Server
from bgqueue.model.schema_base import Credentials, Endpoint

HOSTILE_ENV = "BGQ_TEST_HOSTILE_REPL_PASSWORD"
PLAIN = {"host": "source.example", "user": "repl", "password": "plain-password-1"}
HOSTILE = {
    # closes the literal, sets another port, comments out the rest (user, password, GTID mode)
    "host": {"host": "a' , MASTER_PORT=1 -- "},
    "user": {"user": "u' , MASTER_PORT=1 -- "},
    "password": {"password": "p' , MASTER_PORT=1 # "},
    # backslashes and both quote characters, in every field at once
    "all": {"host": "h\\'\"x", "user": "u\\\\'", "password": "pw\\' \" \\\\ ''"},
}


@pytest.mark.parametrize("sql_mode", ["NO_BACKSLASH_ESCAPES", "STRICT_TRANS_TABLES"])
@pytest.mark.parametrize("field", list(HOSTILE))
def test_change_master_applies_exactly_the_values_given(field, sql_mode, cluster_pair_factory, unique_name,
                                                        sandbox_passwords, monkeypatch):
    pair = cluster_pair_factory(unique_name("quote"))
    values = {**PLAIN, **HOSTILE[field]}
    monkeypatch.setenv(HOSTILE_ENV, values["password"])
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL sql_mode = %s", (sql_mode,))  # every new session (bgqueue's too) has it
    spec = pair.spec_dict()
    admin = Credentials(**spec["admin"])
    with Server(Endpoint(host=pair.blue.host, port=pair.blue.port), admin, label="blue", tls="disabled") as blue:
        assert blue.scalar("SELECT @@SESSION.sql_mode") == sql_mode
        blue.replicate_from(Endpoint.model_construct(host=values["host"], port=3306),  # past the fleet file's own check
                            Credentials(user=values["user"], password_env=HOSTILE_ENV))
        row = blue.row_dict("SHOW SLAVE STATUS")
        blue.execute("STOP SLAVE")
    assert (row["Master_Host"], row["Master_User"], row["Master_Port"]) == (values["host"], values["user"], 3306)
    assert row["Using_Gtid"] == "Slave_Pos" and row["Connect_Retry"] == 1  # the statement's tail was applied
    # The password as the server stored it (master.info, in the datadir this test owns).
    lines = (pair.blue.datadir / "master.info").read_text().split("\n")
    assert lines[3:6] == [values["host"], values["user"], values["password"]], lines[:8]
