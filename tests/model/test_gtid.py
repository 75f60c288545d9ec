import pytest

from bgqueue.model.gtid import GtidParseError, MariaDBPosition, MySQLGtidSet, reached, transactions_behind

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "b9b4712a-df64-11e3-b391-60672090eb04"


def test_mysql_set_parses_merges_and_prints():
    s = MySQLGtidSet.parse(f"{U1}:1-5:6-9:12,\n{U2}:3")
    assert s.sets[U1] == ((1, 9), (12, 12))
    assert str(s) == f"{U1}:1-9:12,{U2}:3"


def test_mysql_containment_and_missing():
    big = MySQLGtidSet.parse(f"{U1}:1-100,{U2}:1-5")
    assert big.contains(MySQLGtidSet.parse(f"{U1}:1-50:60-100"))
    assert not big.contains(MySQLGtidSet.parse(f"{U1}:1-101"))
    assert not big.contains(MySQLGtidSet.parse(f"{U2}:6"))
    assert big.contains(MySQLGtidSet.parse(""))
    assert MySQLGtidSet.parse(f"{U1}:1-10").missing(MySQLGtidSet.parse(f"{U1}:1-15,{U2}:1-2")) == 7
    # a gap inside: 1-3 and 7-10 lacks 4,5,6
    assert MySQLGtidSet.parse(f"{U1}:1-3:7-10").missing(MySQLGtidSet.parse(f"{U1}:1-10")) == 3


def test_uuid_case_does_not_matter():
    assert MySQLGtidSet.parse(f"{U1.upper()}:1-3").contains(MySQLGtidSet.parse(f"{U1}:2"))


@pytest.mark.parametrize("bad", ["nope:1", f"{U1}", f"{U1}:5-3", f"{U1}:0", f"{U1}:a-b"])
def test_mysql_rejects_garbage(bad):
    with pytest.raises(GtidParseError):
        MySQLGtidSet.parse(bad)


def test_mariadb_positions():
    a = MariaDBPosition.parse("0-1-42,1-7-3")
    assert a.reached(MariaDBPosition.parse("0-2-40"))
    assert not a.reached(MariaDBPosition.parse("0-1-43"))
    assert not a.reached(MariaDBPosition.parse("2-1-1"))  # a domain it has never seen
    assert a.behind(MariaDBPosition.parse("0-1-50,1-7-3,2-1-4")) == 12
    assert str(a) == "0-1-42,1-7-3"
    with pytest.raises(GtidParseError):
        MariaDBPosition.parse("0-1")
    with pytest.raises(GtidParseError):
        MariaDBPosition.parse("0-1-1,0-2-2")


def test_flavour_dispatch():
    assert reached("mariadb", "0-1-10", "0-1-10")
    assert not reached("mysql", f"{U1}:1-9", f"{U1}:1-10")
    assert transactions_behind("mysql", f"{U1}:1-9", f"{U1}:1-10") == 1
    assert transactions_behind("mariadb", "", "0-1-5") == 5


def test_mysql_tagged_gtids_are_their_own_sequence():
    s = MySQLGtidSet.parse(f"{U1}:1-5:etl:1-3,\n{U1.upper()}:ETL:4")
    assert s.sets == {U1: ((1, 5),), f"{U1}:etl": ((1, 4),)}
    assert str(s) == f"{U1}:1-5,{U1}:etl:1-4"
    assert MySQLGtidSet.parse(str(s)) == s
    assert s.contains(MySQLGtidSet.parse(f"{U1}:etl:2-4")) and not s.contains(MySQLGtidSet.parse(f"{U1}:6"))
    assert not MySQLGtidSet.parse(f"{U1}:1-9").contains(MySQLGtidSet.parse(f"{U1}:etl:1"))
    assert MySQLGtidSet.parse(f"{U1}:1-5").missing(s) == 4
    for bad in (f"{U1}:etl", f"{U1}:1-2:9tag:1", f"{U1}:{'t' * 33}:1"):
        with pytest.raises(GtidParseError):
            MySQLGtidSet.parse(bad)
