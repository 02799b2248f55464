"""The Celery application. Configuration comes from Django settings (CELERY_* names); the tasks are
`annotator.tasks`, which import the services (and so torch) when the worker starts, not at its first job."""

import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("deepminer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["annotator"])


def worker_argv(hostname: str) -> list[str]:
    """The command line of one solo worker of this app, as `make worker` starts it (for tests and benches
    that start real worker processes): one job at a time, no gossip or mingle to wait for at start."""
    return [
        *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1"),
        *(f"--hostname={hostname}@%h", "--without-gossip", "--without-mingle", "--loglevel=INFO"),
    ]
