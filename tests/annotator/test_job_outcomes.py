"""What a job says when it ends: the message the dashboard shows, the error an admin reads, the log line.

These are what a user of a failed or cancelled job goes by, so their wording is checked, not only the status.
"""

from __future__ import annotations

import logging

import pytest

from annotator.errors import ApplicationError
from annotator.models import Job
from annotator.services.job_state import JobReporter, job_cancel, job_finish_cancelled, job_finish_failed

pytestmark = pytest.mark.django_db


def _running() -> Job:
    return Job.objects.create(kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.RUNNING)


def _raised(depth: int, text: str) -> ValueError:
    """A ValueError raised ``depth`` calls deep, with its traceback."""

    def dive(n: int) -> None:
        if n == 0:
            raise ValueError(text)
        dive(n - 1)

    try:
        dive(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_failed_job_names_the_exception_keeps_a_short_traceback_and_logs_it(caplog) -> None:
    job = _running()
    with caplog.at_level(logging.ERROR, logger="annotator.services.job_state"):
        assert job_finish_failed(job_id=job.pk, exc=_raised(20, "the mask is empty")) == Job.Status.FAILED
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.finished_at is not None
    assert job.message == "Failed: ValueError: the mask is empty"
    text, trace = job.error.split("\n\n", 1)
    assert text == "ValueError: the mask is empty"
    assert trace.startswith("Traceback (most recent call last):\n  File ")
    # The outermost 8 frames of 22 (enough to place it, short to read): _raised and 7 calls of dive, which
    # Python prints as 3 frames and "repeated 4 more times".
    assert trace.count('  File "') == 4 and "[Previous line repeated 4 more times]" in trace
    assert trace.endswith("ValueError: the mask is empty\n")
    assert [r.getMessage() for r in caplog.records] == [f"job {job.pk} failed: the mask is empty"]
    assert caplog.records[0].exc_info is not None


def test_an_application_error_is_shown_as_its_own_message_cut_to_the_field() -> None:
    job = _running()
    job_finish_failed(job_id=job.pk, exc=ApplicationError("No patches: run patch extraction first. " * 30))
    job.refresh_from_db()
    assert job.message.startswith("Failed: No patches: run patch extraction first. ")
    assert len(job.message) == 500  # the dashboard's message column; the whole text stays in the error
    assert job.error.startswith("No patches: run patch extraction first. " * 30)


def test_a_cancelled_job_says_so() -> None:
    job = _running()
    assert job_finish_cancelled(job_id=job.pk) == Job.Status.CANCELLED
    job.refresh_from_db()
    assert (job.status, job.message) == (Job.Status.CANCELLED, "Cancelled")
    assert job.finished_at is not None


def test_a_running_job_sees_its_own_cancel_request_and_no_other_job_s() -> None:
    mine, other = _running(), _running()
    reporter = JobReporter(job_id=mine.pk, min_interval=0.0)
    job_cancel(job=other)
    assert not reporter.cancelled()  # another job's cancel is not this one's
    job_cancel(job=mine)
    assert reporter.cancelled()
