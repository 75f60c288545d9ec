"""Fixtures of the security tests (issue 11): certificate authorities, fleet files with a TLS mode,
deployments put straight into a phase, a trap standing in for a host that is not the cluster's, and a
redis-server with requirepass, ACL users and TLS."""
from __future__ import annotations

import itertools
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from bgqueue.sandbox import RedisServer, RedisTls
from bgqueue.sandbox.tls import CertificateAuthority
from tests.fixtures.bgq import write_fleet

_files = itertools.count(1)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    """The CA the fleet file trusts."""
    return CertificateAuthority.create(tmp_path / "ca", "bgqueue test CA")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    """A CA nobody trusts: what an impostor's certificate is signed by."""
    return CertificateAuthority.create(tmp_path / "other-ca", "impostor CA")


@pytest.fixture
def tls_fleet(tmp_path: Path) -> Callable[..., Path]:
    """``make(pairs, tls, **thresholds)``: a fleet file for sandbox pairs whose clusters all say ``tls``."""

    def make(pairs, tls, **thresholds) -> Path:
        path = write_fleet(tmp_path / f"tls-fleet{next(_files)}.yaml", pairs, **thresholds)
        data = yaml.safe_load(path.read_text())
        for c in data["clusters"]:
            c["tls"] = tls
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


def put_in_phase(runtime, path: Path, phase: str) -> str:
    """A deployment of the fleet's first cluster put straight into ``phase`` (what comes before is
    not what these tests are about), its route pointing at blue."""
    from bgqueue.adapters.store.models import Deployment
    from bgqueue.engine.batches import open_batch
    from bgqueue.model.fleet import load_fleet

    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(phase=phase))
    return dep_id


class Trap:
    """A TCP listener on loopback that counts the connections made to it and closes each at once:
    a route to it is a route to a host that is not one of the cluster's servers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="trap", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


def _openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        pytest.fail("openssl not found; install it with: sudo apt-get install -y openssl", pytrace=False)
    return found


def make_ca_and_server_cert(directory: Path, name: str = "test") -> RedisTls:
    """A private CA and a certificate for 127.0.0.1 signed by it (two-day validity)."""
    directory.mkdir(parents=True, exist_ok=True)
    ossl = _openssl()
    ca_key, ca_crt = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, crt = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.run([ossl, *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
        "-days", "2", "-subj", f"/CN={name} test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return RedisTls(cert_file=crt, key_file=key, ca_file=ca_crt)


WORKER_USER, APP_USER = "bgq-worker", "bgq-app"


def acl_lines(namespace: str, worker_password: str, app_password: str) -> list[str]:
    """The ACL users of the README: workers may do everything; an application host may only read
    its namespace's routes and allow-lists and subscribe to its route channels."""
    return [
        f"user {WORKER_USER} on >{worker_password} ~* &* +@all",
        f"user {APP_USER} on >{app_password} resetkeys %R~bgq:{namespace}:route:* %R~bgq:{namespace}:endpoints:* "
        f"resetchannels &bgq:{namespace}:route:* -@all +hgetall +smembers +subscribe +unsubscribe +ping",
    ]


@dataclass
class SecuredRedis:
    server: RedisServer
    worker_password: str
    app_password: str

    @property
    def worker_url(self) -> str:
        return self.server.url_for(WORKER_USER, self.worker_password)

    @property
    def app_url(self) -> str:
        return self.server.url_for(APP_USER, self.app_password)


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    """redis-server over TLS (rediss://, verified) with requirepass and the two ACL users."""
    from bgqueue.sandbox import MissingBinary

    workdir = tmp_path_factory.mktemp("secured-redis")
    tls = make_ca_and_server_cert(workdir / "tls")
    worker_pw, app_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    server = RedisServer(workdir, requirepass=secrets.token_urlsafe(18), acl=acl_lines("default", worker_pw, app_pw),
                         tls=tls)
    try:
        server.start()
    except MissingBinary as e:
        pytest.fail(str(e), pytrace=False)
    yield SecuredRedis(server, worker_pw, app_pw)
    server.stop()
