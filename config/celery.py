"""Celery configuration. Read by tasks.app; every value here is a deliberate choice."""
from __future__ import annotations

import ssl
from urllib.parse import parse_qsl, urlsplit

from celery.schedules import crontab

from config.settings import Settings

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "cert_required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
              "cert_optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE, "cert_none": ssl.CERT_NONE}


def redis_tls_options(url: str) -> dict | None:
    """For a ``rediss://`` URL, the TLS options Celery, kombu and Flower are to use: the server's
    certificate is verified (``ssl_cert_reqs=required``) unless the URL itself says otherwise, with
    the CA file (``ssl_ca_certs``) and client certificate the URL names. None for ``redis://``."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query))
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs!r} in a rediss:// URL: use required, optional or none")
    options: dict = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(key):
            options[key] = query[key]
    return options


def celery_config(s: Settings) -> dict:
    broker_tls = redis_tls_options(s.effective_broker_url)
    backend_tls = redis_tls_options(s.effective_result_backend)
    return {
        # rediss://: TLS with the server's certificate verified, for the broker and the results.
        **({"broker_use_ssl": broker_tls} if broker_tls else {}),
        **({"redis_backend_use_ssl": backend_tls} if backend_tls else {}),
        "broker_url": s.effective_broker_url,
        "result_backend": s.effective_result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged only once it has run; a worker that dies mid-task gives it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Countdowns stay far below this, or Redis redelivers the task and it runs twice (FACTS).
        "broker_transport_options": {"visibility_timeout": s.visibility_timeout_s},
        "result_backend_transport_options": {"visibility_timeout": s.visibility_timeout_s},
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "result_expires": 7 * 24 * 3600,
        # Flower follows tasks by their events (received, started, succeeded, retried). A STARTED
        # state in the result backend and a task-sent event would add a Redis write and a publish
        # to every one of a fleet's ~10 tasks per cluster, and nothing reads them.
        "task_track_started": False,
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "broker_connection_retry_on_startup": True,
        # A broker restart is survived: reconnect forever (with Celery's backoff) instead of exiting.
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "worker_hijack_root_logger": False,
        "task_default_queue": "bgqueue",
        "beat_schedule": {
            # Every registered fleet, every night (the fan-out gives each cluster its own task).
            "nightly-validations": {"task": "bgqueue.nightly.fan_out",
                                    "schedule": crontab(hour=s.nightly_hour, minute=0),
                                    "options": {"expires": 3600}},
            # A procedure whose worker vanished (a fenced primary must not wait an hour for redelivery).
            "watchdog": {"task": "bgqueue.maintenance.watchdog", "schedule": s.watchdog_interval_s,
                         "options": {"expires": max(1.0, s.watchdog_interval_s * 0.9)}},
            # The routes' Redis copies, rebuilt from the store (a Redis restarted empty).
            "republish-routes": {"task": "bgqueue.maintenance.republish_routes", "schedule": 10.0,
                                 "options": {"expires": 9}},
            # Old primaries whose retention ended stop replicating and are reported free.
            "decommission-due": {"task": "bgqueue.maintenance.decommission_due", "schedule": 600.0,
                                 "options": {"expires": 540}},
        },
    }
