"""The Celery application. Configuration comes from Django settings (CELERY_* names); the tasks are
`annotator.tasks`, which import the services (and so torch) when the worker starts, not at its first job."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("deepminer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["annotator"])
