"""Running one function per image on a few threads: phase 1 decodes, phase 2 encodes and writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mining.progress import ProgressFn

__all__ = ["in_threads"]

# Threads decoding / encoding images at once; each holds one image (and its masks) in memory.
_IO_THREADS = min(4, os.cpu_count() or 1)
T = TypeVar("T")
R = TypeVar("R")


def in_threads(fn: Callable[[T], R], items: list[T], progress: ProgressFn, verb: str) -> list[R]:
    """``[fn(item) for item in items]`` on a few threads: decoding, PNG encoding and fsync release
    the GIL, so this scales with the cores (the DB is never touched from these threads).

    On the first exception the queued items are cancelled and the running ones finish before it
    propagates, so the caller's cleanup sees every file that was written.
    """
    pool = ThreadPoolExecutor(max_workers=_IO_THREADS, thread_name_prefix="import")
    try:
        futures = [pool.submit(fn, item) for item in items]
        results = []
        for index, future in enumerate(futures, start=1):
            results.append(future.result())
            progress(index, len(items), f"{verb} {index}/{len(items)} images")
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
