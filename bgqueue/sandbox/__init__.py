"""Local servers for tests, the demo and ``bgqueue sandbox``: real redis-server, mariadbd and postgres processes."""
from bgqueue.sandbox.binaries import MissingBinary, find_binary
from bgqueue.sandbox.fleet_sandbox import Sandbox
from bgqueue.sandbox.mariadb import MariaDBServer, template_datadir
from bgqueue.sandbox.pair import (
    ADMIN_PASSWORD_ENV,
    ADMIN_USER,
    APP_DATABASE,
    APP_PASSWORD_ENV,
    APP_USER,
    META_DATABASE,
    MONITOR_PASSWORD_ENV,
    MONITOR_USER,
    REPL_PASSWORD_ENV,
    REPL_USER,
    ClusterPair,
    SandboxPasswords,
)
from bgqueue.sandbox.ports import free_port
from bgqueue.sandbox.postgres import PostgresServer
from bgqueue.sandbox.redis_server import RedisServer, RedisTls, ServerStartError

__all__ = [
    "ADMIN_PASSWORD_ENV", "ADMIN_USER", "APP_DATABASE", "APP_PASSWORD_ENV", "APP_USER",
    "META_DATABASE", "MONITOR_PASSWORD_ENV", "MONITOR_USER", "REPL_PASSWORD_ENV", "REPL_USER", "ClusterPair", "MariaDBServer", "MissingBinary", "PostgresServer",
    "RedisServer", "RedisTls", "Sandbox", "SandboxPasswords", "ServerStartError", "free_port", "find_binary", "template_datadir",
]
