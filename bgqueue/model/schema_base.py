"""Building blocks of the fleet file shared by its sections (clusters, CDC pipelines, providers)."""
from __future__ import annotations

import fnmatch
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bgqueue.model.errors import BadInput
from bgqueue.model.secrets import register_secret

# Which environment variables a fleet file may name as credentials: comma-separated glob patterns
# (fnmatch, case-sensitive). Declared in config/settings.py (credential_env_pattern); read from the
# environment here because the vocabulary imports no settings, and because it must hold at the
# very place a password is read.
CREDENTIAL_ENV_PATTERN_VAR = "BGQUEUE_CREDENTIAL_ENV_PATTERN"
DEFAULT_CREDENTIAL_ENV_PATTERN = "BGQ_*"


class StrictModel(BaseModel):
    # No infinity or NaN anywhere in a fleet file: every number ends up in a comparison, a
    # timedelta or a countdown, where they pass a lower bound and then overflow in a worker.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def credential_env_pattern() -> str:
    """The configured pattern (default ``BGQ_*``)."""
    return os.environ.get(CREDENTIAL_ENV_PATTERN_VAR, DEFAULT_CREDENTIAL_ENV_PATTERN)


def credential_env_allowed(name: str) -> bool:
    """May a fleet file name the variable ``name`` as a credential? Without this scope a fleet
    file could name any variable of the worker (another cluster's admin password, a cloud key) and
    have it sent to a server the file chooses."""
    patterns = [p.strip() for p in credential_env_pattern().split(",") if p.strip()]
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def credential_scope_problem(name: str) -> str | None:
    """Why ``name`` may not be read (None when it may)."""
    if credential_env_allowed(name):
        return None
    return (f"environment variable {name} is outside the credential scope "
            f"({CREDENTIAL_ENV_PATTERN_VAR}={credential_env_pattern()!r}); it is not read")


class Credentials(StrictModel):
    """A user name and the environment variable that holds its password (never the password)."""

    user: str = Field(min_length=1)
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def password(self) -> str:
        """Resolve the password from this process's environment; BadInput when it is not set or
        the variable is outside the credential scope (checked again here, not only at load time:
        a stored spec reaches workers whose scope may be narrower)."""
        problem = credential_scope_problem(self.password_env)
        if problem is not None:
            raise BadInput(f"{problem} (password of user {self.user!r})")
        value = os.environ.get(self.password_env)
        if value is None:
            raise BadInput(f"environment variable {self.password_env} (password of user {self.user!r}) is not set")
        register_secret(value)  # from now on no log line of this process can carry it
        return value


# A DNS name, an IPv4 address or an IPv6 address (bracketed or not): nothing that a statement,
# a log line or a terminal could take for syntax.
HOST_RE = r"^[A-Za-z0-9._:\[\]-]{1,253}$"


class Endpoint(StrictModel):
    host: str = Field(pattern=HOST_RE)
    port: int = Field(default=3306, ge=1, le=65535)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def key(self) -> tuple[str, int]:
        """The endpoint as two fleet-file entries naming the same server would write it (DNS
        names are case-insensitive; a trailing dot and IPv6 brackets change nothing)."""
        return self.host.lower().rstrip(".").strip("[]"), self.port

TlsMode = Literal["disabled", "preferred", "required", "verify"]


class Tls(StrictModel):
    """How bgqueue's connections to a cluster's servers (admin, reverse replication, the sampler's
    probe, the CDC consumer) use TLS. Written as a mode (``tls: required``) or a mapping
    (``tls: {mode: verify, ca: /etc/bgqueue/ca.pem}``).

    - ``disabled``: never (loopback and test networks only);
    - ``preferred``: when the server offers it; anyone in the path can strip it (plaintext);
    - ``required``: encrypted or refused; the server is not authenticated;
    - ``verify``: encrypted, the certificate chain checked against ``ca`` and the certificate's
      names against the host bgqueue connects to.
    """

    mode: TlsMode = "preferred"
    ca: str | None = Field(default=None, description="PEM CA file on the hosts where bgqueue runs (verify)")
    replication_ca: str | None = Field(
        default=None, description="PEM CA file on the servers' own hosts, read by a replica to check its "
                                  "source in reverse replication (verify); default: ca")

    @model_validator(mode="before")
    @classmethod
    def _mode_alone(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _ca_with_verify(self) -> Tls:
        if self.mode == "verify" and not self.ca:
            raise ValueError("mode verify needs a CA file: tls: {mode: verify, ca: /path/to/ca.pem}")
        if self.mode != "verify" and (self.ca or self.replication_ca):
            raise ValueError(f"a CA file is used only with mode verify (mode is {self.mode})")
        for name, path in (("ca", self.ca), ("replication_ca", self.replication_ca)):
            if path is not None and not os.path.isabs(path):
                raise ValueError(f"{name} must be an absolute path (each host resolves it itself), not {path!r}")
        return self

    @property
    def encrypted(self) -> bool:
        """Must every session be encrypted (refused otherwise)?"""
        return self.mode in ("required", "verify")

    @property
    def source_ca(self) -> str | None:
        """The CA file a replica (on the server's host) checks its source against."""
        return self.replication_ca or self.ca

    def __str__(self) -> str:
        return self.mode if self.ca is None else f"{self.mode} (ca {self.ca})"
