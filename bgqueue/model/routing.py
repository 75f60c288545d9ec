"""Where applications find a cluster's writer: the fleet file's ``routing:`` targets.

Every target of a cluster is flipped at the switchover (and back at a rollback), each one
journaled; each has a readiness check in validation. ``registry`` (bgqueue's own Redis registry,
which ``bgqueue.client`` follows) is always there, first; the others are extra paths:

    routing:
      - kind: haproxy          # a TCP proxy driven through its runtime API (admin socket)
        admin: unix:/run/haproxy/admin.sock   # or host:port
        backend: db_writer
        blue_server: blue
        green_server: green
      - kind: route53          # a DNS name UPSERTed to the new writer
        zone_id: Z123
        record: db.example.internal.
        type: CNAME            # or A
        blue_value: blue.db.example.internal.
        green_value: green.db.example.internal.
        ttl_s: 5
      - kind: ssm              # a connection string in Parameter Store
        parameter: /app/db/writer
        region: eu-west-1
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bgqueue.model.schema_base import StrictModel

_NAME = r"^[A-Za-z0-9_.:-]+$"  # HAProxy backend/server names: no spaces or ';' (one command per line)


class RegistryTarget(StrictModel):
    kind: Literal["registry"] = "registry"

    @property
    def label(self) -> str:
        return "registry"


class HAProxyTarget(StrictModel):
    kind: Literal["haproxy"]
    admin: str = Field(min_length=3, max_length=300, description="runtime API: unix:/path or host:port")
    backend: str = Field(pattern=_NAME, max_length=64)
    blue_server: str = Field(pattern=_NAME, max_length=64)
    green_server: str = Field(pattern=_NAME, max_length=64)

    @property
    def label(self) -> str:
        return f"haproxy {self.admin} {self.backend}"


class Route53Target(StrictModel):
    kind: Literal["route53"]
    zone_id: str = Field(pattern=r"^[A-Z0-9]{1,32}$")
    record: str = Field(min_length=1, max_length=255)
    type: Literal["A", "CNAME"] = "CNAME"
    blue_value: str = Field(min_length=1, max_length=255)
    green_value: str = Field(min_length=1, max_length=255)
    ttl_s: int = Field(default=5, ge=1, le=86400, description="TTL written at the flip")
    max_ttl_s: int = Field(default=5, ge=1, le=86400,
                           description="readiness: the record's TTL must be at or below this (AWS advises 5 s)")
    insync_timeout_s: float = Field(default=60.0, gt=0, le=600,
                                    description="the flip waits this long at most for the change to be INSYNC")
    region: str = "us-east-1"

    @property
    def label(self) -> str:
        return f"route53 {self.zone_id} {self.record}"


class SsmTarget(StrictModel):
    kind: Literal["ssm"]
    parameter: str = Field(pattern=r"^/?[A-Za-z0-9_.\-/]+$", max_length=1011)
    region: str = "us-east-1"

    @property
    def label(self) -> str:
        return f"ssm {self.parameter}"


RoutingTarget = Annotated[RegistryTarget | HAProxyTarget | Route53Target | SsmTarget, Field(discriminator="kind")]


class MaintenanceSpec(StrictModel):
    """Maintenance mode (opt-in): before the fence, registered application instances stop handing
    out connections, let in-flight transactions finish, close their pools and acknowledge; after
    the flip they reconnect to the new writer. The wait is bounded and comes BEFORE the fence, so
    it does not lengthen the write-blocked window."""

    mode: Literal["off", "drain"] = "off"
    ack_timeout_s: float = Field(default=5.0, gt=0, le=300)
    on_timeout: Literal["proceed", "abort"] = Field(
        default="proceed", description="silent clients: switch anyway (recorded) or abort (nothing changed)")
    clients: list[str] = Field(default_factory=list,
                               description="instances that must acknowledge (default: every registered one)")
