"""List pages: `?limit=&offset=` as DRF's LimitOffsetPagination reads them, with the limit capped. Uncapped, a
limit past what the database's integers hold (SQLite: 2**63 - 1) failed the query with a 500."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

__all__ = ["MAX_PAGE", "BoundedLimitOffsetPagination"]

MAX_PAGE = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """A larger limit gives MAX_PAGE rows; an offset past the end gives none (DRF answers [] before querying)."""

    max_limit = MAX_PAGE
