"""Fixtures shared by the mining tests (no database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test, then the caller's setting back: for tiny networks, whose many small
    ops wait on OpenMP barriers with 2+ threads (far slower on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
