-- Runs once on the blue primary's first start (docker-entrypoint-initdb.d).
CREATE USER IF NOT EXISTS 'bgq_admin'@'%' IDENTIFIED BY 'change-me-admin';
GRANT ALL PRIVILEGES ON *.* TO 'bgq_admin'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'bgq_repl'@'%' IDENTIFIED WITH caching_sha2_password BY 'change-me-repl';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'bgq_repl'@'%';
CREATE DATABASE IF NOT EXISTS appdb;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'change-me-app';
GRANT SELECT, INSERT, UPDATE, DELETE ON appdb.* TO 'app'@'%';
