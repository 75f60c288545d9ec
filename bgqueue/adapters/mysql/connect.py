"""How bgqueue opens a PyMySQL session to a managed server: TLS by the cluster's mode, and no
password ever sent in clear text.

Every connection bgqueue makes to a cluster's servers takes its keyword arguments from
``connect_args`` (the admin ``Server``, the sampler's probe through it, the CDC consumer, the
embedded client and the workload), so one place decides:

- TLS: ``verify`` checks the certificate chain against the CA file and the certificate's names
  against the host connected to; ``required`` encrypts without authenticating the server;
  both refuse a server without TLS (PyMySQL raises 2026 when it is given a context) and the session
  is checked to be encrypted (``check_encrypted``). ``preferred`` is PyMySQL's opportunistic mode,
  ``disabled`` is plaintext.
- SSL contexts are built once per (mode, CA file version) and reused: PyMySQL builds one per
  connect otherwise (~31 ms here, FACTS), which multiplied a switchover's write gap.
- Clear-text password plugins are refused: a server (or anyone in between) that switches the
  authentication to ``mysql_clear_password`` or to PAM's ``dialog`` gets an error, not the password.
"""
from __future__ import annotations

import os
import ssl
import threading

import pymysql
import pymysql.cursors
from pymysql.constants import CR

from bgqueue.model.errors import BadInput
from bgqueue.model.schema_base import Tls

CLEAR_TEXT_PLUGINS = ("mysql_clear_password", "dialog")


class ClearTextRefused:
    """A PyMySQL auth plugin handler that sends nothing and fails the handshake."""

    def __init__(self, conn: pymysql.connections.Connection):
        self.host = f"{conn.host}:{conn.port}"

    def authenticate(self, packet) -> None:
        raise pymysql.err.OperationalError(
            CR.CR_AUTH_PLUGIN_CANNOT_LOAD,
            f"{self.host} asked for a clear-text password plugin: refused, no password sent")

    def prompt(self, echo: bool, prompt: bytes) -> bytes:  # PAM's dialog, should authenticate be bypassed
        self.authenticate(None)
        return b""


# PyMySQL looks plugins up by the name the server sends (bytes) or its decoded form.
REFUSE_CLEAR_TEXT = {name: ClearTextRefused for name in CLEAR_TEXT_PLUGINS}

_contexts: dict[tuple, ssl.SSLContext] = {}
_lock = threading.Lock()


def as_tls(tls: Tls | str) -> Tls:
    return tls if isinstance(tls, Tls) else Tls.model_validate(tls)


def ssl_context(tls: Tls) -> ssl.SSLContext | None:
    """The shared context of this mode (None for disabled/preferred). A CA file replaced on disk
    (new mtime or size) gets a new context; BadInput names the file when it cannot be read."""
    if not tls.encrypted:
        return None
    key: tuple = (tls.mode,)
    if tls.mode == "verify":
        assert tls.ca is not None
        try:
            st = os.stat(tls.ca)
        except OSError as e:
            raise BadInput(f"TLS CA file {tls.ca}: {e.strerror}") from None
        key = (tls.mode, tls.ca, st.st_mtime_ns, st.st_size)
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = _build(tls)
        return ctx


def _build(tls: Tls) -> ssl.SSLContext:
    if tls.mode == "verify":
        try:
            ctx = ssl.create_default_context(cafile=tls.ca)  # CERT_REQUIRED, check_hostname
        except (OSError, ssl.SSLError) as e:
            raise BadInput(f"TLS CA file {tls.ca}: cannot load: {e}") from None
    else:  # required: encrypted, the server not authenticated (and no system CA store to load)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect_args(tls: Tls | str) -> dict:
    """PyMySQL keyword arguments for TLS and authentication, for ``pymysql.connect(**...)``."""
    tls = as_tls(tls)
    args: dict = {"auth_plugin_map": dict(REFUSE_CLEAR_TEXT)}
    if tls.mode == "disabled":
        args["ssl_disabled"] = True
    elif tls.encrypted:
        args["ssl"] = ssl_context(tls)
    return args


def check_encrypted(conn: pymysql.connections.Connection, tls: Tls | str, where: str) -> None:
    """Refuse (BadInput naming ``where``) a session that should be encrypted and is not: the
    server's own view (``Ssl_cipher``), not only the driver's."""
    if not as_tls(tls).encrypted:
        return
    with conn.cursor(pymysql.cursors.Cursor) as cur:  # whatever cursorclass the connection was made with
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    if not row or not row[1]:
        conn.close()
        raise BadInput(f"{where}: the session is not encrypted (tls {as_tls(tls).mode}): refused")


def describe_connect_error(e: BaseException) -> str:
    """An operator's wording of a failed connect, TLS failures said as such."""
    text = str(e.args[-1]) if getattr(e, "args", None) else str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text or "Hostname mismatch" in text or "doesn't match" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" )")
        return f"TLS verification failed: {detail}"
    if "SSL is required" in text:
        return "TLS required but the server does not offer it"
    return text
