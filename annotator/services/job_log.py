"""The last lines a running job logged, kept for its page: a logging handler attached for the run of one
job that keeps a bounded tail (``JOB_LOG_LINES``) of what the job's own thread logs and of its progress
messages. The tail reaches ``Job.log`` with the writes the job makes anyway (progress, its end), never one
query per line.

Only a record's message is kept, never its traceback: the traceback of a failure is in ``Job.error``,
which only admins read (``selectors.jobs.job_error_seen``); every signed-in user may read the log.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

__all__ = ["JOB_LOG_LINES", "JobLog", "job_log_capture"]

JOB_LOG_LINES = 200
_LINE_CHARS = 500  # one runaway record (a huge repr) must not push out every other line


class JobLog(logging.Handler):
    """A tail of at most ``max_lines`` lines, newest last; ``pending()`` is the text once after each change."""

    def __init__(self, max_lines: int = JOB_LOG_LINES) -> None:
        super().__init__(level=logging.INFO)
        self.thread = threading.get_ident()  # the job's thread: a worker's other threads log other things
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._changed = False
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: logging must never fail the job
            text = str(record.msg)
        self.write(text, level=record.levelname, when=record.created)

    def write(self, text: str, *, level: str = "INFO", when: float | None = None) -> None:
        stamp = datetime.fromtimestamp(when) if when is not None else datetime.now()
        with self._guard:
            for line in (text or "").splitlines() or [""]:
                self._lines.append(f"{stamp:%H:%M:%S} {level:<7} {line[:_LINE_CHARS]}")
            self._changed = True

    def text(self) -> str:
        with self._guard:
            return "\n".join(self._lines)

    def pending(self) -> str | None:
        """The whole tail if it changed since the last call, else None (nothing to write)."""
        with self._guard:
            if not self._changed:
                return None
            self._changed = False
            return "\n".join(self._lines)


@contextmanager
def job_log_capture() -> Iterator[JobLog]:
    """A JobLog on the root logger for the ``with`` block (records of this thread only)."""
    log = JobLog()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        yield log
    finally:
        root.removeHandler(log)
