"""The Celery application."""
from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging

from bgqueue import logs

from config.celery import celery_config
from config.settings import Settings, get_settings

app = Celery("bgqueue")
app.conf.update(celery_config(get_settings()))


@setup_logging.connect
def _logging(loglevel=None, **_kw) -> None:
    """Workers log through bgqueue.logs (ids on every line, JSON mode, secrets masked)."""
    logs.configure(json_mode=get_settings().log_json, level=loglevel or "INFO")


def configure(settings: Settings) -> None:
    """Re-apply settings (the demo and tests set BGQUEUE_* after this module was imported)."""
    app.conf.update(celery_config(settings))
