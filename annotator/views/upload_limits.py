"""An upload handler that drops a file once it passes a size cap, while Django is still reading it, so an
oversized upload is never stored whole (Django's own limits leave file parts uncapped)."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, SkipFile

__all__ = ["SizeCappedUploadHandler"]


class SizeCappedUploadHandler(FileUploadHandler):
    """Put first in ``request.upload_handlers``: a file over ``limit`` bytes is skipped (the handlers after
    it close and delete what they kept) and its field name lands in ``refused``; the other fields parse on."""

    def __init__(self, request: Any, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.refused: dict[str, int] = {}  # field name -> bytes received when it was dropped

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.refused[self.field_name] = self.received
            raise SkipFile(f"{self.file_name} is over {self.limit} bytes")
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file
