"""Streamed downloads: rows go out as they are read, so memory stays flat however many there are."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse

__all__ = ["csv_lines", "json_array_chunks", "stream_csv", "stream_json"]


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def json_array_chunks(items: Iterable[Any], batch: int = 200) -> Iterator[str]:
    """A JSON array written a batch of items at a time (fewer, larger chunks stream faster)."""
    yield "["
    buffer: list[str] = []
    first = True
    for item in items:
        buffer.append(json.dumps(item, separators=(",", ":"), default=str))
        if len(buffer) >= batch:
            yield ("" if first else ",") + ",".join(buffer)
            first, buffer = False, []
    if buffer:
        yield ("" if first else ",") + ",".join(buffer)
    yield "]\n"


def _attachment(response: StreamingHttpResponse, filename: str) -> StreamingHttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def stream_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str) -> StreamingHttpResponse:
    return _attachment(StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8"), filename)


def stream_json(items: Iterable[Any], filename: str) -> StreamingHttpResponse:
    return _attachment(StreamingHttpResponse(json_array_chunks(items), content_type="application/json"), filename)
