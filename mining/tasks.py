"""The thin bridge between Celery and the product: a task takes a job id and runs that job.

This is the one module under mining/ that reaches Django (through annotator.services); all
computation lives in the pure modules beside it.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="deepminer.run_job", ignore_result=False)
def run_job(job_id: int) -> str:
    from annotator.services.runners import job_run  # importing registers every job kind's runner

    return job_run(job_id=job_id)
