"""Reads: querysets and small summaries for pages and the API, one module per area. The general ones
(datasets, images, jobs, models) are re-exported here; units and fractures are imported by module."""

from . import core
from .core import *  # noqa: F403 - core.__all__ is the list, kept in one place

__all__ = core.__all__
