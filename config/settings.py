"""Process-wide settings, read from BGQUEUE_* environment variables.

Secrets are never settings: credentials are resolved by the adapters from the
environment variables that the fleet file names.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".bgqueue"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BGQUEUE_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="state directory (default store lives here)")
    # The environment's routing namespace: route keys and channels are bgq:{namespace}:route:{cluster},
    # so environments sharing a Redis server (pub/sub ignores database numbers) never see each other's.
    namespace: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    # URLs may carry credentials (redis://user:password@host, rediss:// for TLS); they are masked in logs.
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None  # defaults to redis_url
    result_backend: str | None = None  # defaults to redis_url
    store_url: str | None = None  # defaults to sqlite:///{home}/bgqueue.sqlite
    lock_ttl_s: int = 3600
    visibility_timeout_s: int = 3600
    max_countdown_s: int = 300
    # Owner liveness (engine/watchdog.py): a switchover or rollback renews its lease with every
    # journal write and every slice of its bounded waits; another worker takes it over once the
    # lease is older than this. The watchdog runs this often (Celery beat).
    procedure_lease_s: float = Field(default=8.0, gt=0, le=300)
    watchdog_interval_s: float = Field(default=2.0, gt=0, le=300)
    # Any other live phase is re-driven from the store after this long without a task working on
    # it (beyond its own poll interval); PENDING waits longer (a deep queue at the start of a batch).
    stall_s: float = Field(default=60.0, gt=0, le=86400)
    pending_stall_s: float = Field(default=600.0, gt=0, le=86400)
    log_json: bool = False
    nightly_hour: int = 2  # UTC hour of the nightly validations (Celery beat)
    # Nightly: green (or -oldN) environments coexisting longer than this are reported with their cost.
    coexist_report_days: float = Field(default=7.0, gt=0, le=365)
    # Which environment variables a fleet file's password_env may name: comma-separated globs.
    # Enforced where credentials are read (bgqueue.model.schema_base reads the same variable,
    # BGQUEUE_CREDENTIAL_ENV_PATTERN, itself: the vocabulary imports no settings).
    credential_env_pattern: str = "BGQ_*"

    @property
    def effective_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.home / 'bgqueue.sqlite'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def effective_result_backend(self) -> str:
        return self.result_backend or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
