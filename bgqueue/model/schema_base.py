"""Building blocks of the fleet file shared by its sections (clusters, CDC pipelines, providers)."""
from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from bgqueue.model.errors import BadInput
from bgqueue.model.secrets import register_secret


class StrictModel(BaseModel):
    # No infinity or NaN anywhere in a fleet file: every number ends up in a comparison, a
    # timedelta or a countdown, where they pass a lower bound and then overflow in a worker.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Credentials(StrictModel):
    """A user name and the environment variable that holds its password (never the password)."""

    user: str = Field(min_length=1)
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def password(self) -> str:
        """Resolve the password from this process's environment; BadInput when it is not set."""
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
