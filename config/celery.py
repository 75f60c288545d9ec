"""Celery configuration. Read by tasks.app; every value here is a deliberate choice."""
from __future__ import annotations

from celery.schedules import crontab

from config.settings import Settings


def celery_config(s: Settings) -> dict:
    return {
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
        "worker_hijack_root_logger": False,
        "task_default_queue": "bgqueue",
        "beat_schedule": {
            # Every registered fleet, every night (the fan-out gives each cluster its own task).
            "nightly-validations": {"task": "bgqueue.nightly.fan_out",
                                    "schedule": crontab(hour=s.nightly_hour, minute=0),
                                    "options": {"expires": 3600}},
            # A procedure whose worker vanished (a fenced primary must not wait an hour for redelivery).
            "watchdog": {"task": "bgqueue.maintenance.watchdog", "schedule": 30.0, "options": {"expires": 25}},
            # The routes' Redis copies, rebuilt from the store (a Redis restarted empty).
            "republish-routes": {"task": "bgqueue.maintenance.republish_routes", "schedule": 10.0,
                                 "options": {"expires": 9}},
            # Old primaries whose retention ended stop replicating and are reported free.
            "decommission-due": {"task": "bgqueue.maintenance.decommission_due", "schedule": 600.0,
                                 "options": {"expires": 540}},
        },
    }
