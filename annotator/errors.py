"""The one application error services raise; the API exception handler turns it into a response."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request the product understood but cannot carry out; `message` is shown to the user."""

    def __init__(self, message: str, extra: dict[str, Any] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status = status
