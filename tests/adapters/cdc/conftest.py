"""Fixtures of the CDC tests (the servers come from tests/fixtures)."""
from __future__ import annotations

import os
import secrets

import pytest

from tests.adapters.cdc.helpers import CDC_PASSWORD_ENV


@pytest.fixture(scope="session")
def cdc_password() -> str:
    """The password of the dedicated binlog reader some tests create, exported for in-process consumers."""
    password = secrets.token_urlsafe(18)
    os.environ[CDC_PASSWORD_ENV] = password
    return password


@pytest.fixture
def cdc_env(bgq_env, cdc_password) -> dict[str, str]:
    """The environment of a consumer process: BGQUEUE_* settings and every password variable."""
    return dict(bgq_env, **{CDC_PASSWORD_ENV: cdc_password})
