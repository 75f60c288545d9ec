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
    assert d.access_denied_sql is None  # MariaDB: the Access_denied_errors status variable


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


def test_mysql_counts_access_denied_in_performance_schema():
    sql = Dialect("mysql", (9, 7, 4)).access_denied_sql
    assert sql is not None and "performance_schema.events_errors_summary_global_by_error" in sql
    assert "'ER_ACCESS_DENIED_ERROR'" in sql and "'ER_TABLEACCESS_DENIED_ERROR'" in sql


def test_caught_up_mysql_replica_reads_zero_seconds_behind():
    from bgqueue.adapters.mysql.dialects import applied_all_received

    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    row = {"Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes", "Retrieved_Gtid_Set": f"{u}:5-9",
           "Executed_Gtid_Set": f"{u}:1-9,\n5b6c1a2e-0000-11e1-9e33-c80aa9429562:1-3"}
    assert applied_all_received(row)
    assert not applied_all_received({**row, "Executed_Gtid_Set": f"{u}:1-8"})  # one received, not applied
    assert not applied_all_received({**row, "Replica_SQL_Running": "No"})
    assert not applied_all_received({"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes"})  # MariaDB: as read
