"""``bgqueue sandbox up/down``: a redis-server and N blue/green pairs that outlive the command.

The directory holds everything: fleet.yaml (what ``bgqueue fleet run`` reads), sandbox.json
(ports, pids, datadirs, user names; mode 0600, never a password) and sandbox.env (mode 0600,
the passwords as ``export`` lines to ``source``).

``sandbox down`` acts on what sandbox.json says, and that file may not be the one ``up`` wrote
(planted, or copied with a directory): so it removes only directories inside the sandbox
directory (resolved: a symlink cannot lead out), signals a recorded pid only when its process is
exactly the server ``up`` started there (executable, whole command line, working directory),
and refuses a file whose cluster names or paths are not the ones ``up`` writes.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bgqueue.model.errors import BadInput
from bgqueue.sandbox.binaries import pid_running, stop_pid
from bgqueue.sandbox.mariadb import MariaDBServer, mariadbd_process
from bgqueue.sandbox.mysql import FLAVOURS, mysqld_process
from bgqueue.sandbox.pair import (
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    REPL_USER,
    ClusterPair,
    SandboxPasswords,
)
from bgqueue.sandbox.redis_server import RedisServer, redis_process

# Seconds, not minutes: a sandbox is for trying things out.
THRESHOLDS = {"max_lag_s": 1.0, "sync_timeout_s": 60, "sync_poll_s": 0.5, "catchup_timeout_s": 5, "lag_window_s": 2,
              "validation_timeout_s": 30, "validation_poll_s": 0.5, "monitor_window_s": 3, "monitor_tick_s": 0.5,
              "monitor_eval_s": 2}
REDIS_URL_ENV = "BGQUEUE_REDIS_URL"
# What up() names its clusters (c01, c02, ...): one path component, never "..", "/" or a dot.
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# The short socket directories MariaDBServer makes in the temporary directory (mkdtemp).
SOCKET_DIR_RE = re.compile(r"^bgq-[A-Za-z0-9_]{8}$")


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start (no window where another user could read it), then renamed.
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Sandbox:
    """A local fleet in ``dir``: clusters ``c01``..``cNN`` plus one redis-server. ``flavour``:
    "mariadb" or "mysql" (Oracle MySQL fetched by scripts/fetch-mysql.sh) for every pair."""

    def __init__(self, dir: Path, clusters: int = 4, detach: bool = True, cache_dir: Path | None = None,
                 flavour: str = "mariadb"):
        if clusters < 1:
            raise BadInput(f"a sandbox needs at least 1 cluster, not {clusters}")
        if flavour not in FLAVOURS:
            raise BadInput(f"unknown sandbox flavour {flavour!r}: one of {', '.join(FLAVOURS)}")
        self.flavour = flavour
        self.dir = Path(dir).absolute()
        self.clusters = clusters
        self.detach = detach
        self.cache_dir = cache_dir
        self.redis: RedisServer | None = None
        self.pairs: list[ClusterPair] = []
        self.passwords: SandboxPasswords | None = None
        self.info: dict = {}

    fleet_path = property(lambda self: self.dir / "fleet.yaml")
    json_path = property(lambda self: self.dir / "sandbox.json")
    env_path = property(lambda self: self.dir / "sandbox.env")

    @classmethod
    def load(cls, dir: Path) -> Sandbox:
        """The sandbox recorded in ``dir/sandbox.json`` (e.g. to stop it from another process)."""
        path = Path(dir).absolute() / "sandbox.json"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"no sandbox in {path.parent} ({path.name} not found)") from None
        except (OSError, ValueError) as e:
            raise BadInput(f"{path}: cannot read: {e}") from None
        _check_recorded(info, path)
        sb = cls(path.parent, clusters=max(1, len(info.get("clusters", []))), detach=info.get("detach", True),
                 flavour=info.get("flavour", "mariadb"))
        sb.info = info
        return sb

    def pids(self) -> list[int]:
        """Every server pid recorded in sandbox.json."""
        info = self.info
        pids = [info["redis"]["pid"]] if info.get("redis") else []
        for c in info.get("clusters", []):
            pids += [c["blue"]["pid"], c["green"]["pid"]]
        return pids

    def running(self) -> bool:
        """True when any recorded server process is still alive."""
        return any(pid_running(p) for p in self.pids())

    def up(self) -> Sandbox:
        """Start redis and the pairs (in parallel), write the three files. BadInput if one runs here."""
        if self.json_path.exists():
            previous = Sandbox.load(self.dir)
            if previous.running():
                raise BadInput(f"a sandbox is already running in {self.dir}; "
                               f"stop it first: bgqueue sandbox down --dir {self.dir}")
            previous._remove_files()  # stale (e.g. after a reboot): its datadirs would clash
        self.dir.mkdir(parents=True, exist_ok=True)
        self.passwords = SandboxPasswords.generate()
        try:
            self.redis = RedisServer(self.dir / "redis", detach=self.detach).start()
            self.pairs = [
                ClusterPair(self.dir / f"c{k + 1:02d}", f"c{k + 1:02d}", 2 * k + 1, 2 * k + 2, self.passwords,
                            detach=self.detach, cache_dir=self.cache_dir, flavour=self.flavour)
                for k in range(self.clusters)
            ]
            for p in self.pairs:
                shutil.rmtree(p.workdir, ignore_errors=True)
            # Pair starts are mostly waiting on mariadbd; threads overlap them (4 pairs ≈ 1 pair's time).
            with ThreadPoolExecutor(min(8, self.clusters)) as pool:
                for f in [pool.submit(p.start) for p in self.pairs]:
                    f.result()
            self._write_files()
        except BaseException:
            self._stop_objects()
            raise
        return self

    def _write_files(self) -> None:
        assert self.redis and self.passwords
        fleet = {
            "version": 1, "name": "sandbox", "defaults": {"thresholds": dict(THRESHOLDS)},
            "clusters": [p.spec_dict() for p in self.pairs],
        }
        self.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False))
        self.info = {
            "version": 1, "dir": str(self.dir), "detach": self.detach, "flavour": self.flavour,
            "fleet": str(self.fleet_path), "env_file": str(self.env_path),
            "redis": {"url": self.redis.url, "port": self.redis.port, "pid": self.redis.pid,
                      "workdir": str(self.redis.workdir)},
            "clusters": [
                {"name": p.name, "blue": _server_info(p.blue), "green": _server_info(p.green)} for p in self.pairs
            ],
            "users": {"admin": ADMIN_USER, "replication": REPL_USER, "app": APP_USER},
            "app_database": APP_DATABASE,
            "password_envs": list(self.passwords.env()),
        }
        _write_private(self.json_path, json.dumps(self.info, indent=2) + "\n")
        # BGQUEUE_HOME here keeps this sandbox's store apart from any other.
        env = {**self.passwords.env(), REDIS_URL_ENV: self.redis.url, "BGQUEUE_HOME": str(self.dir)}
        _write_private(self.env_path, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))

    def down(self, keep_store: bool = False) -> None:
        """Stop every server (clean shutdown) and remove the sandbox's files and datadirs
        (``keep_store``: all but the store, so that status and report still know the batches)."""
        if self.redis or self.pairs:
            self._stop_objects()
        else:
            self._stop_recorded()
        self._remove_files(keep_store)

    def _stop_objects(self) -> None:
        # Their datadirs are removed next: MySQL pairs are killed (a clean shutdown takes seconds each).
        for p in self.pairs:
            p.discard() if self.flavour == "mysql" else p.stop()
        if self.redis:
            self.redis.stop()

    def _stop_recorded(self) -> None:
        # Another process started them: stop by pid, each only if it is exactly that server.
        for c in self.info.get("clusters", []):
            for role in ("green", "blue"):
                s, workdir = c[role], self.dir / c["name"] / role
                # The datadirs are removed next: a MySQL server gets 2 s to stop, then SIGKILL.
                describe, wait = (mysqld_process, 2) if self.flavour == "mysql" else (mariadbd_process, 10)
                stop_pid(s["pid"], wait, expect=describe(workdir / "my.cnf", workdir / "data"))
                _remove_socket_dir(Path(s["socket"]))
        if self.info.get("redis"):
            stop_pid(self.info["redis"]["pid"], 10, expect=redis_process(self.info["redis"]["port"], self.dir / "redis"))

    def _remove_files(self, keep_store: bool = False) -> None:
        # The directories up() makes, named from this directory (never from the file's paths),
        # and removed only when they resolve inside it.
        root = self.dir.resolve()
        dirs = [self.dir / "redis", *(self.dir / c["name"] for c in self.info.get("clusters", []))]
        dirs += [p.workdir for p in self.pairs] + ([self.redis.workdir] if self.redis else [])
        for d in {Path(d) for d in dirs}:
            if _inside(d, root):
                shutil.rmtree(d, ignore_errors=True)
        # The sandbox's own store (BGQUEUE_HOME=dir): its deployments name servers that are gone.
        # unlink() removes a symlink itself, never what it points to.
        store = [] if keep_store else list(self.dir.glob("bgqueue.sqlite*"))
        for f in (self.json_path, self.env_path, self.fleet_path, *store):
            f.unlink(missing_ok=True)


def _inside(path: Path, root: Path) -> bool:
    """``path`` is a real directory (not a symlink) strictly inside ``root``, once resolved."""
    if path.is_symlink() or not path.is_dir():
        return False
    resolved = path.resolve()
    return resolved != root and resolved.is_relative_to(root)


def _check_recorded(info: dict, path: Path) -> None:
    """Refuse a sandbox.json that up() did not write for this directory, before anything acts on it."""
    def refuse(what: str) -> None:
        raise BadInput(f"{path}: {what}; this is not a sandbox.json written for {path.parent}: "
                       "nothing was stopped or removed")

    if not isinstance(info, dict):
        refuse("not a JSON object")
    if info.get("flavour", "mariadb") not in FLAVOURS:
        refuse(f"flavour {info.get('flavour')!r} is not one of {', '.join(FLAVOURS)}")
    clusters = info.get("clusters", [])
    if not isinstance(clusters, list):
        refuse("clusters is not a list")
    root = path.parent
    for i, c in enumerate(clusters):
        name = c.get("name") if isinstance(c, dict) else None
        if not isinstance(name, str) or not CLUSTER_NAME_RE.fullmatch(name):
            refuse(f"clusters[{i}].name {name!r} is not a sandbox cluster name")
        for role in ("blue", "green"):
            s = c.get(role)
            if not isinstance(s, dict) or not isinstance(s.get("pid"), int) or not isinstance(s.get("socket"), str):
                refuse(f"clusters[{i}].{role} has no pid and socket")
            for key, want in (("cnf", root / name / role / "my.cnf"), ("datadir", root / name / role / "data")):
                if key in s and Path(s[key]) != want:
                    refuse(f"clusters[{i}].{role}.{key} is {s[key]}, not {want}")
    redis = info.get("redis")
    if redis is not None:
        if not isinstance(redis, dict) or not isinstance(redis.get("pid"), int) or not isinstance(redis.get("port"), int):
            refuse("redis has no pid and port")
        if "workdir" in redis and Path(redis["workdir"]) != root / "redis":
            refuse(f"redis.workdir is {redis['workdir']}, not {root / 'redis'}")


def _server_info(s: MariaDBServer) -> dict:
    return {"host": s.host, "port": s.port, "pid": s.pid, "server_id": s.server_id,
            "datadir": str(s.datadir), "socket": str(s.socket), "cnf": str(s.cnf)}


def _remove_socket_dir(sock: Path) -> None:
    """Only a short socket dir MariaDBServer made in the temporary directory for a long workdir
    (see MAX_SOCKET_PATH): named like mkdtemp made it, a real directory of this user, holding
    nothing but the server's socket files. Anything else a file names there is left alone."""
    parent = sock.parent
    if not (SOCKET_DIR_RE.fullmatch(parent.name) and parent.parent == Path(tempfile.gettempdir())):
        return
    try:
        st = os.lstat(parent)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return
        if any(not entry.startswith("mysqld.sock") for entry in os.listdir(parent)):
            return
    except OSError:
        return
    shutil.rmtree(parent, ignore_errors=True)
