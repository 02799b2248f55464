"""Reads: querysets and small summaries for pages and the API, one module per area."""

from .core import (
    dataset_list,
    dataset_summary,
    image_list,
    job_list,
    model_report,
    patch_counts,
    trained_model_list,
)

__all__ = [
    "dataset_list",
    "dataset_summary",
    "image_list",
    "job_list",
    "model_report",
    "patch_counts",
    "trained_model_list",
]
