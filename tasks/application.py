"""The Celery application."""
from __future__ import annotations

from celery import Celery

from config.celery import celery_config
from config.settings import Settings, get_settings

app = Celery("bgqueue")
app.conf.update(celery_config(get_settings()))


def configure(settings: Settings) -> None:
    """Re-apply settings (the demo and tests set BGQUEUE_* after this module was imported)."""
    app.conf.update(celery_config(settings))
