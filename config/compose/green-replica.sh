#!/bin/sh
# One-shot: make green a GTID replica of blue (MySQL 8.0), read-only. Idempotent.
set -eu
until mysqladmin -h blue -uroot -p"$MYSQL_ROOT_PASSWORD" ping --silent; do sleep 1; done
until mysqladmin -h green -uroot -p"$MYSQL_ROOT_PASSWORD" ping --silent; do sleep 1; done
mysql -h green -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
STOP REPLICA;
CHANGE REPLICATION SOURCE TO SOURCE_HOST='blue', SOURCE_PORT=3306, SOURCE_USER='bgq_repl',
  SOURCE_PASSWORD='${BGQ_REPL_PASSWORD}', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1;
START REPLICA;
SET GLOBAL super_read_only = ON;
SQL
