"""Building blocks of the fleet file shared by its sections (clusters, CDC pipelines, providers)."""
from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from bgqueue.model.errors import BadInput
from bgqueue.model.secrets import register_secret


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Endpoint(StrictModel):
    host: str = Field(min_length=1)
    port: int = Field(default=3306, ge=1, le=65535)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"
