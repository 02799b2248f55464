"""Streamed downloads: rows go out as they are read, so memory stays flat however many there are."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse

__all__ = ["csv_cell", "csv_lines", "json_array_chunks", "stream_csv", "stream_export", "stream_json"]

# OWASP's CSV injection rule: a text cell that starts with one of these is read as a formula by spreadsheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> Any:
    """A cell as a spreadsheet shows it, never runs it: text starting like a formula gets a leading quote
    (numbers stay numbers, so -3 is still -3)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Every CSV export's lines: cells neutralised by `csv_cell`."""
    writer = csv.writer(_Echo())
    yield writer.writerow([csv_cell(cell) for cell in header])
    for row in rows:
        yield writer.writerow([csv_cell(cell) for cell in row])


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


def stream_export(
    fmt: str,
    records: Iterable[dict[str, Any]],
    stem: str,
    header: Sequence[str],
    to_rows: Callable[[Iterable[dict[str, Any]]], Iterable[Sequence[Any]]],
) -> StreamingHttpResponse:
    """A model's export as ``<stem>.json`` (the records as they are) or ``<stem>.csv`` (``header`` and
    ``to_rows(records)``), the one shape of every ``export.<fmt>`` download."""
    if fmt == "json":
        return stream_json(records, f"{stem}.json")
    return stream_csv(header, to_rows(records), f"{stem}.csv")
