"""Certificates for sandbox servers with TLS: a private CA and server certificates it signs, made
with the ``openssl`` command line (no Python crypto dependency, the same tool an operator uses).

P-256 keys: ~30 ms per key here, against ~100 ms for RSA-2048. Certificates carry the extensions
a strict verifier wants (SAN, key identifiers, serverAuth), so Python's and MariaDB's clients both
check them as they would a production certificate.
"""
from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bgqueue.sandbox.binaries import find_binary

DAYS = 7
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class CertificateError(RuntimeError):
    """openssl failed; the message carries its output."""


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run([find_binary("openssl"), *args], cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")


def _san(hosts: Sequence[str]) -> str:
    def one(h: str) -> str:
        return f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}"
    return ",".join(one(h) for h in hosts)


@dataclass(frozen=True)
class ServerCertificate:
    """What a server is started with: its certificate, its key, and its CA's certificate."""

    cert: Path
    key: Path
    ca: Path
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class CertificateAuthority:
    """A private CA: ``cert`` is what clients trust (a fleet file's ``tls.ca``)."""

    name: str
    cert: Path
    key: Path

    @classmethod
    def create(cls, dir: Path, name: str = "bgqueue sandbox CA") -> CertificateAuthority:
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        cert, key = dir / "ca.pem", dir / "ca.key"
        _openssl("req", "-x509", *_KEY, "-keyout", str(key), "-out", str(cert), "-days", str(DAYS),
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash",
                 cwd=dir)
        key.chmod(0o600)
        return cls(name, cert, key)

    def issue(self, dir: Path, name: str, hosts: Sequence[str] = LOOPBACK_NAMES) -> ServerCertificate:
        """A server certificate for ``hosts`` (IP addresses and DNS names), CN the first of them."""
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        cert, key, csr, ext = (dir / f"{name}.pem", dir / f"{name}.key", dir / f"{name}.csr", dir / f"{name}.ext")
        _openssl("req", "-new", *_KEY, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hosts[0]}", cwd=dir)
        ext.write_text(f"subjectAltName={_san(hosts)}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(secrets.randbits(62)), "-days", str(DAYS), "-out", str(cert),
                 "-extfile", str(ext), cwd=dir)
        csr.unlink()
        ext.unlink()
        key.chmod(0o600)
        return ServerCertificate(cert, key, self.cert, tuple(hosts))
