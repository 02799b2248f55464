"""The browser import (admins): a dataset zip or a folder under the server's import roots, imported by a
job with progress and cancel, by the CLI's rules (``datasets.dataset_import``: all or nothing, every bad row
with its line and reason).

A zip's members are checked (``importing.zip_archive``) before it is kept, in a private staging folder
(``settings.IMPORT_STAGING_DIR/<id>/``, 0700) that the web server and the workers share; the job checks
them again, unpacks there, imports, and removes the folder whatever the outcome. A folder is resolved
inside ``settings.IMPORT_ROOTS`` when the job is created and again when it runs (a link may change in
between), and every image and mask must resolve inside the same root. A failed import's bad rows are its
result's ``errors``; a cancelled one leaves no dataset, no rows and no files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from mining.progress import Cancelled

from ..errors import ApplicationError
from ..importing.roots import folder_in_roots
from ..importing.zip_archive import ZipLimits, zip_members_check, zip_unpack
from ..models import Dataset, Job
from .datasets import CLASSES_BY_KIND, LAYOUTS, dataset_import
from .job_state import JobReporter, job_finish_succeeded

__all__ = ["import_params_validate", "import_upload_stage", "run_import", "staging_folder", "staging_sweep"]

STAGED_ZIP = "upload.zip"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 20
# Where each step's progress sits on the job's bar, by the verb its messages start with.
_STEPS = {"unpacked": (0.0, 0.2), "checked": (0.2, 0.5), "stored": (0.7, 0.3)}


def _limits() -> ZipLimits:
    return ZipLimits(
        max_members=settings.IMPORT_ZIP_MAX_MEMBERS,
        max_bytes=settings.IMPORT_ZIP_MAX_BYTES,
        max_ratio=settings.IMPORT_ZIP_MAX_RATIO,
    )


def staging_folder(upload_id: str) -> Path:
    """The private folder of one staged upload; refuses an id that is not one this module made."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise ApplicationError(f"unknown upload {upload_id!r}")
    return Path(settings.IMPORT_STAGING_DIR) / upload_id


def _open_zip(source: str | Path | IO[bytes], name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ApplicationError(f"{name} is not a readable zip file: {exc}") from exc


def import_upload_stage(*, uploaded: UploadedFile | None) -> str:
    """Check an uploaded dataset zip and keep it in a staging folder of its own; the upload's id.

    Every refusal (too large, not a zip, a member the zip checks refuse) comes before anything is kept.
    """
    if uploaded is None:
        raise ApplicationError("choose a zip file of images and a manifest.csv to upload")
    name = uploaded.name or "upload.zip"
    if uploaded.size is not None and uploaded.size > settings.IMPORT_UPLOAD_MAX_BYTES:
        raise ApplicationError(
            f"{name} is {uploaded.size:,} bytes; dataset zips are limited to {settings.IMPORT_UPLOAD_MAX_BYTES:,}",
            status=413,
        )
    path = getattr(uploaded, "temporary_file_path", None)
    source: str | IO[bytes] = path() if callable(path) else uploaded.open("rb")
    with _open_zip(source, name) as archive:
        zip_members_check(archive, _limits())
    staging_sweep()
    upload_id = uuid.uuid4().hex
    folder = staging_folder(upload_id)
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.mkdir(mode=0o700)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # 0600
        with os.fdopen(fd, "wb") as out:
            for chunk in uploaded.chunks(_CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / STAGED_ZIP)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return upload_id


def staging_sweep() -> None:
    """Remove the staged uploads of finished import jobs (a job cancelled while queued never ran to do it)."""
    for params in Job.objects.filter(kind=Job.Kind.IMPORT, status__in=Job.FINISHED).values_list("params", flat=True):
        upload_id = params.get("upload") if isinstance(params, dict) else None
        if isinstance(upload_id, str) and _UPLOAD_ID.fullmatch(upload_id):
            shutil.rmtree(staging_folder(upload_id), ignore_errors=True)


def import_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    """An import job's parameters: name, kind, layout, seed, and either ``upload`` (a staged zip's id) or
    ``folder`` (under the import roots)."""
    if dataset is not None:
        raise ApplicationError("an import makes a new dataset: give no dataset")
    name = str(params.get("name") or "").strip()
    if not name:
        raise ApplicationError("a dataset needs a name")
    if len(name) > Dataset._meta.get_field("name").max_length:  # type: ignore[operator]
        raise ApplicationError("the dataset name is too long")
    if Dataset.objects.filter(name=name).exists():
        raise ApplicationError(f"a dataset named {name!r} already exists")
    kind, layout = params.get("kind", "mammogram"), params.get("layout", "manifest")
    if kind not in CLASSES_BY_KIND:
        raise ApplicationError(f"unknown dataset kind {kind!r}; use one of {', '.join(CLASSES_BY_KIND)}")
    if layout not in LAYOUTS:
        raise ApplicationError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    seed = params.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ApplicationError("seed must be a whole number, 0 or more")
    cleaned: dict[str, Any] = {"name": name, "kind": kind, "layout": layout, "seed": seed}
    upload, folder = params.get("upload"), params.get("folder")
    if (upload is None) == (folder is None):
        raise ApplicationError("give either an uploaded zip or a folder under the import root")
    if upload is not None:
        if not isinstance(upload, str) or not (staging_folder(upload) / STAGED_ZIP).is_file():
            raise ApplicationError(f"unknown upload {upload!r}")
        cleaned["upload"] = upload
        cleaned["upload_name"] = str(params.get("upload_name") or STAGED_ZIP)[:200]
    else:
        if not isinstance(folder, str):
            raise ApplicationError("folder must be a path")
        folder_in_roots(folder, settings.IMPORT_ROOTS)
        cleaned["folder"] = folder
    return cleaned


def run_import(job: Job, reporter: JobReporter) -> dict[str, Any]:
    """Unpack (a zip) or resolve (a folder), then import with the job's progress; a cancel request stops it
    at the next image, before the rows are written."""

    def check_cancelled() -> None:
        if reporter.cancelled():
            raise Cancelled("cancelled on request")

    def progress(done: int, total: int, message: str) -> None:
        check_cancelled()
        start, span = _STEPS.get(message.split(" ", 1)[0], (0.0, 1.0))
        reporter.progress(round(1000 * (start + span * done / max(total, 1))), 1000, message)

    params = job.params
    upload_id = params.get("upload")
    try:
        if upload_id is not None:
            folder, root = _unpacked(upload_id, params, progress, check_cancelled)
        else:
            folder, root = folder_in_roots(params["folder"], settings.IMPORT_ROOTS)
        # The dataset and its job's success commit together: a worker killed in between would leave a
        # dataset of a failed job, and its re-run a second one.
        with transaction.atomic():
            dataset = dataset_import(
                name=params["name"],
                folder=folder,
                layout=params["layout"],
                kind=params["kind"],
                seed=params["seed"],
                created_by=job.created_by,
                progress=progress,
                confine_to=root,
            )
            Job.objects.filter(pk=job.pk).update(dataset=dataset)  # listed with the dataset it made
            result = {"dataset": dataset.pk, "name": dataset.name, "images": dataset.images.count()}
            job_finish_succeeded(job_id=job.pk, result=result)
    except ApplicationError as exc:
        if exc.extra.get("errors"):
            Job.objects.filter(pk=job.pk).update(result={"errors": exc.extra["errors"]})
        raise
    finally:
        if upload_id is not None:
            shutil.rmtree(staging_folder(upload_id), ignore_errors=True)
    return result


def _unpacked(
    upload_id: str, params: dict[str, Any], progress: Callable[[int, int, str], None], check: Callable[[], None]
) -> tuple[Path, Path]:
    """Unpack a staged zip into its staging folder; (the dataset's folder, the unpacked root)."""
    staging = staging_folder(upload_id)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(params.get("upload_name") or "").stem).strip(".") or "upload"
    root = staging / "unpacked" / stem
    shutil.rmtree(staging / "unpacked", ignore_errors=True)  # a previous attempt's, from a killed worker
    root.mkdir(parents=True, mode=0o700)
    with _open_zip(staging / STAGED_ZIP, params.get("upload_name") or STAGED_ZIP) as archive:
        members = zip_members_check(archive, _limits())
        zip_unpack(archive, members, root, progress=progress, check_cancelled=check)
    return _dataset_folder(root, params["layout"]), root


def _dataset_folder(root: Path, layout: str) -> Path:
    """The unpacked root, or the one folder it holds when a manifest zip was made of a folder."""
    if layout != "manifest" or (root / "manifest.csv").is_file():
        return root
    entries = [entry for entry in root.iterdir() if entry.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "manifest.csv").is_file():
        return entries[0]
    raise ApplicationError("the zip holds no manifest.csv at its top (or in its one top folder)")
