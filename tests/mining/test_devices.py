"""Device selection for workers (DEEPMINER_DEVICE)."""

from __future__ import annotations

import pytest
import torch

from mining.devices import select_device


def test_auto_takes_the_gpu_only_where_there_is_one() -> None:
    assert select_device("auto", cuda_available=False) == torch.device("cpu")
    assert select_device("auto", cuda_available=True) == torch.device("cuda")
    assert select_device("", cuda_available=False) == torch.device("cpu")
    assert select_device("AUTO", cuda_available=True).type == "cuda"


def test_cpu_and_cuda_are_taken_as_asked() -> None:
    assert select_device("cpu", cuda_available=True) == torch.device("cpu")
    assert select_device("cuda:1", cuda_available=True) == torch.device("cuda:1")


def test_cuda_without_a_gpu_and_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="no usable CUDA"):
        select_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="must be one of"):
        select_device("tpu", cuda_available=True)


def test_this_machine_gets_what_torch_reports() -> None:
    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
