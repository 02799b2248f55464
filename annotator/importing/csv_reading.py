"""Reading the CSVs of both layouts: normalised headers, the file's own line numbers, cell values."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ApplicationError
from .records import MAX_LEN

__all__ = ["CBIS_COLUMNS", "FINDING_COLUMNS", "IMAGE_COLUMNS", "check_text", "parse_value", "read_csv"]

# The column names of both layouts live together: header normalisation knows all of them, whichever
# layout's file it reads.
IMAGE_COLUMNS = ("image", "patient_id", "label", "view", "laterality", "split")
FINDING_COLUMNS = ("mask", "mask_pathology", "mask_concepts", "mask_lesion_type", "mask_description")
CBIS_COLUMNS = (
    "patient_id",
    "breast_density",
    "left_or_right_breast",
    "image_view",
    "abnormality_id",
    "abnormality_type",
    "mass_shape",
    "mass_margins",
    "calc_type",
    "calc_distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image_file_path",
    "cropped_image_file_path",
    "roi_mask_file_path",
)


def read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Normalised header (lower case, spaces -> underscores for known names) and (line, cells) rows.

    Line numbers are the file's own (header = 1) even with blank lines or quoted newlines.
    """
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    try:
        raw_header = next(reader)
    except StopIteration:
        handle.close()
        raise ApplicationError(f"{path.name} is empty") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise ApplicationError(f"{path.name} is not a readable CSV file: {exc}") from exc
    header = [_column_name(cell) for cell in raw_header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            try:
                for row in reader:
                    if any(cell.strip() for cell in row):
                        yield reader.line_num, row
            except (UnicodeDecodeError, csv.Error) as exc:
                raise ApplicationError(f"{path.name} line {reader.line_num + 1} cannot be read: {exc}") from exc

    return header, rows()


def _column_name(cell: str) -> str:
    """Known column names match case- and spacing-insensitively; other names are kept as written."""
    canonical = re.sub(r"[\s_]+", "_", cell.strip().lower())
    known = {*IMAGE_COLUMNS, *FINDING_COLUMNS, *CBIS_COLUMNS}
    return canonical if canonical in known else cell.strip()


_INT = re.compile(r"[-+]?(0|[1-9]\d*)")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def parse_value(text: str) -> Any:
    """A metadata cell: int or float when it is plainly a number, else the text.

    "007" stays text: a leading zero means a code, not a quantity.
    """
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) and not re.match(r"[-+]?0\d", text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


def check_text(values: dict[str, str], column: str, *, required: bool = False, limit: int | None = None) -> list[str]:
    """A text cell's problems: empty though required, or longer than ``limit`` (default: its model field)."""
    value = values.get(column, "")
    if required and not value:
        return [f"{column} is empty"]
    limit = limit or MAX_LEN.get(column)
    if limit and len(value) > limit:
        return [f"{column} is longer than {limit} characters"]
    return []
