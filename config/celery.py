"""The Celery application. Configuration comes from Django settings (CELERY_* names)."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("deepminer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["mining"])


@worker_ready.connect
def _import_job_runners(**kwargs: object) -> None:
    """Import the job runners (torch, scikit-learn: about a second) while the worker starts, so the first
    job, or a mining chord waiting on it, does not pay for it."""
    import annotator.services.runners  # noqa: F401
