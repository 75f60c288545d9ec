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
    log_json: bool = False
    nightly_hour: int = 2  # UTC hour of the nightly validations (Celery beat)

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
