"""Where heavy work runs: the device of this worker (``DEEPMINER_DEVICE``) and the Celery queue of each
job kind (``CELERY_GPU_QUEUE``: training, mining and batch explanation go to that queue, served by workers
started with ``-Q <queue>`` on GPU machines; patch extraction and the rest stay on the default queue)."""

from __future__ import annotations

import torch
from django.conf import settings

from mining.devices import select_device
from mining.precision import Precision, select_precision

from ..errors import ApplicationError
from ..models import Job

__all__ = ["HEAVY_KINDS", "job_device_label", "job_queue", "worker_device", "worker_precision"]

HEAVY_KINDS = frozenset({Job.Kind.TRAIN, Job.Kind.MINE, Job.Kind.EXPLAIN})


def worker_device() -> torch.device:
    """The device this process computes on; a misconfigured worker fails its job with the reason."""
    try:
        return select_device(settings.DEEPMINER_DEVICE)
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc


def worker_precision() -> Precision:
    """The arithmetic of this worker's forward passes (``DEEPMINER_PRECISION`` on its device); a bad setting
    fails the job with the reason."""
    try:
        return select_precision(settings.DEEPMINER_PRECISION, worker_device())
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc


def job_queue(kind: str) -> str | None:
    """The queue a job of ``kind`` (and its shards) is sent to; None: Celery's default queue."""
    queue = settings.CELERY_GPU_QUEUE.strip()
    return queue if queue and kind in HEAVY_KINDS else None


def job_device_label(kind: str) -> str:
    """Where a job of ``kind`` computes in this worker, for its page: this worker's device for the heavy
    kinds, the CPU for the rest; "" when the worker's device setting is bad (the runner then fails saying so)."""
    if kind not in HEAVY_KINDS:
        return "cpu"
    try:
        device = worker_device()
    except ApplicationError:
        return ""
    if device.type == "cuda" and device.index is None:  # "auto" and "cuda" mean the current GPU: name it
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)
