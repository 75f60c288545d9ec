"""Celery layer: the app, one task decorator, thin tasks. `celery -A tasks worker`."""
import tasks.batch  # noqa: F401,E402
import tasks.deployment  # noqa: F401,E402  (registers the tasks)
import tasks.maintenance  # noqa: F401,E402
import tasks.nightly  # noqa: F401,E402
from tasks.application import app  # noqa: F401  (celery -A tasks finds `app`)
