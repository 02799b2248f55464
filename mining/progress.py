"""How long-running mining code reports progress and learns it should stop, without knowing who asks.

Callers (the job runner, benches, tests) pass a `ProgressFn` and a `CancelFn`; mining code calls
`progress(done, total, message)` and checks `cancelled()` between batches, raising `Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CancelFn", "Cancelled", "ProgressFn", "check_cancel", "never_cancelled", "no_progress"]

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised by mining code when its cancel check says stop; nothing partial is returned."""


def no_progress(done: int, total: int, message: str) -> None:
    """A progress callback that ignores everything."""


def never_cancelled() -> bool:
    return False


def check_cancel(cancelled: CancelFn) -> None:
    if cancelled():
        raise Cancelled("cancelled on request")
