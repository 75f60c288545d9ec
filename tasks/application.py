"""The Celery application."""
from __future__ import annotations

from pathlib import Path

from celery import Celery
from celery.signals import setup_logging, worker_init

from bgqueue.adapters import logs
from bgqueue.adapters.runtime import register_url_secrets
from config.celery import celery_config
from config.settings import Settings, get_settings

app = Celery("bgqueue")
app.conf.update(celery_config(get_settings()))
register_url_secrets(get_settings())  # the broker's password is masked in every line the worker logs

# Flower's admin access is guarded in this file (it refuses to start without authentication).
FLOWER_CONFIG = Path(__file__).resolve().parents[1] / "config" / "flower.py"


def _flower_reads_our_config() -> None:
    """Plain ``celery -A tasks flower`` (no --conf) would look for flowerconfig.py in the working
    directory, run without one, and serve its UI to anyone, on every interface. The celery
    command imports this app before it runs the subcommand: when that subcommand is flower, make
    config/flower.py Flower's default --conf, so its checks hold either way. An explicit --conf
    (or FLOWER_CONF) still wins: that is the operator's own choice of configuration."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:
        return
    if ctx is None or getattr(ctx, "invoked_subcommand", None) != "flower":
        return
    from flower.options import options  # defines Flower's options (the plugin is loaded already)

    options.conf = str(FLOWER_CONFIG)


_flower_reads_our_config()


@setup_logging.connect
def _logging(loglevel=None, **_kw) -> None:
    """Workers log through bgqueue.adapters.logs (ids on every line, JSON mode, secrets masked)."""
    logs.configure(json_mode=get_settings().log_json, level=loglevel or "INFO")


@worker_init.connect
def _preload(**_kw) -> None:
    """In the worker's parent, before the pool forks: import the providers and load the AWS
    service models once, instead of once in every child on its first task."""
    try:
        import bgqueue.checks.rds  # noqa: F401
        import bgqueue.engine.rds.steps  # noqa: F401
        from bgqueue.adapters.aws import clients as aws
        from bgqueue.adapters.aws import cost

        aws.warm()
        cost.prices()
    except Exception:  # a worker without boto3 models still works: each child loads them itself
        pass


def configure(settings: Settings) -> None:
    """Re-apply settings (the demo and tests set BGQUEUE_* after this module was imported)."""
    app.conf.update(celery_config(settings))
    register_url_secrets(settings)
