"""Small dataset folders and zips for the browser-import tests (the CLI tests' folder builder, zipped)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tests.annotator.test_import_dataset import COLUMNS, build_folder, write_manifest

__all__ = ["dataset_folder", "folder_zip", "zip_bytes"]


def dataset_folder(folder: Path, *, n_patients: int = 3, bad_label_line: int | None = None) -> Path:
    """A manifest folder of ``n_patients`` patients (two views each); ``bad_label_line`` (a CSV line number,
    header = 1) gets the unknown label 'malignent'."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = build_folder(folder, n_patients=n_patients)
    if bad_label_line is not None:
        rows[bad_label_line - 2]["label"] = "malignent"
    write_manifest(folder, rows, COLUMNS)
    return folder


def folder_zip(folder: Path, *, top: str = "") -> bytes:
    """The files of ``folder`` as a zip, under the folder ``top`` when given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(folder)}" if top else str(path.relative_to(folder)))
    return buffer.getvalue()


def zip_bytes(*members: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    """A deflated zip of exactly these (name or ZipInfo, data) members, names kept as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
