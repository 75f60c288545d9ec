"""GTID positions of a consumer: how they advance with each delivered transaction, both flavours."""
from __future__ import annotations

import pytest

from bgqueue.adapters.cdc import position
from bgqueue.model.gtid import GtidParseError

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "5b6c1a2e-0000-11e1-9e33-c80aa9429562"


def test_mariadb_position_replaces_the_entry_of_the_transaction_domain():
    assert position.advance("mariadb", "", "0-1-1") == "0-1-1"
    assert position.advance("mariadb", "0-1-41", "0-1-42") == "0-1-42"
    # A transaction first committed on green (server 2) continues domain 0 after blue's last one.
    assert position.advance("mariadb", "0-1-42", "0-2-43") == "0-2-43"
    assert position.advance("mariadb", "0-2-43,1-7-3", "1-7-4") == "0-2-43,1-7-4"
    with pytest.raises(GtidParseError):
        position.advance("mariadb", "0-1-1", "0-1-2,1-1-1")


def test_mysql_position_is_the_set_of_delivered_transactions():
    assert position.advance("mysql", "", f"{U1}:1") == f"{U1}:1"
    assert position.advance("mysql", f"{U1}:1-41", f"{U1}:42") == f"{U1}:1-42"
    assert position.advance("mysql", f"{U1}:1-42", f"{U2}:7") == f"{U1}:1-42,{U2}:7"
    assert position.advance("mysql", f"{U1}:1-40", f"{U1.upper()}:42") == f"{U1}:1-40:42"


def test_includes_behind_and_origin():
    assert position.includes("mariadb", "0-2-50", "0-1-42")
    assert not position.includes("mariadb", "0-1-40", "0-1-42")
    assert position.behind("mariadb", "0-1-40", "0-1-42") == 2
    assert position.behind("mysql", f"{U1}:1-40", f"{U1}:1-42") == 2
    assert position.origin_server_id("mariadb", "0-17-5") == "17"
    assert position.origin_server_id("mysql", f"{U1.upper()}:5") == U1
