from bgqueue.adapters.mysql.dialects import Dialect, parse_version
from bgqueue.model.schema_base import Tls


def test_flavour_and_version_are_read_from_the_server_string():
    assert parse_version("10.11.19-MariaDB-0+deb12u1") == ("mariadb", (10, 11, 19))
    assert parse_version("8.0.36") == ("mysql", (8, 0, 36))
    assert parse_version("8.4.2-commercial") == ("mysql", (8, 4, 2))


def test_mariadb_statements():
    d = Dialect("mariadb", (10, 11, 19))
    assert d.gtid_position_sql == "SELECT @@GLOBAL.gtid_binlog_pos"
    assert d.wait_for_position_sql() == "SELECT MASTER_GTID_WAIT(%s, %s)"
    assert d.set_read_only_sql(True) == ["SET GLOBAL read_only = ON"]
    assert d.prepare_reverse_sql() == ["SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos"]
    sql, args = d.change_source("10.0.0.1", 3306, "repl", "p'w")
    assert "MASTER_USE_GTID=slave_pos" in sql and "MASTER_PASSWORD=%s" in sql and "MASTER_SSL=0" in sql
    assert args == ("10.0.0.1", "repl", "p'w") and "p'w" not in sql  # values go to the driver, never the text
    sql, args = d.change_source("h", 3306, "u", "p", tls=Tls(mode="verify", ca="/etc/ca.pem"))
    assert "MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=1" in sql and args[-1] == "/etc/ca.pem"
    assert d.replica_status_sql == "SHOW SLAVE STATUS" and d.reset_replica_sql == "RESET SLAVE ALL"


def test_mysql8_statements():
    d = Dialect("mysql", (8, 0, 36))
    assert d.gtid_position_sql == d.applied_position_sql == "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10 USING ascii), '')"
    assert d.wait_for_position_sql() == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"
    assert d.set_read_only_sql(True) == ["SET GLOBAL super_read_only = ON"]
    assert d.set_read_only_sql(False) == ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]
    assert d.prepare_reverse_sql() == []
    sql, _ = d.change_source("h", 3306, "u", "p")
    assert sql.startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s") and "SOURCE_AUTO_POSITION=1" in sql
    assert "SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=86400" in sql and "GET_SOURCE_PUBLIC_KEY=1" in sql
    sql, args = d.change_source("h", 3306, "u", "p", tls=Tls(mode="verify", ca="/a/ca.pem", replication_ca="/b/ca.pem"))
    assert "SOURCE_SSL=1, SOURCE_SSL_CA=%s, SOURCE_SSL_VERIFY_SERVER_CERT=1" in sql and args[-1] == "/b/ca.pem"
    assert "GET_SOURCE_PUBLIC_KEY" not in sql
    assert d.replica_status_sql == "SHOW REPLICA STATUS" and d.start_replica_sql == "START REPLICA"
    assert d.binlog_status_sql == "SHOW MASTER STATUS"
    assert Dialect("mysql", (8, 4, 0)).binlog_status_sql == "SHOW BINARY LOG STATUS"
    assert Dialect("mysql", (8, 0, 21)).replica_status_sql == "SHOW SLAVE STATUS"
