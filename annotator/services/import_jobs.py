"""Starting a browser import: stage the uploaded zip (if any) and create its job, or keep nothing.

Apart from ``dataset_imports`` because creating a job imports the job-kind table, which imports that module.
"""

from __future__ import annotations

import shutil
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.files.uploadedfile import UploadedFile

from ..models import Job
from .dataset_imports import import_upload_stage, staging_folder
from .jobs import job_create

__all__ = ["dataset_import_job_create"]


def dataset_import_job_create(
    *, params: dict[str, Any], uploaded: UploadedFile | None, created_by: User | AnonymousUser | None
) -> Job:
    """A queued import of ``uploaded`` (a zip) when given, else of ``params["folder"]``; ApplicationError,
    with the staged zip removed, when the zip or a parameter is refused."""
    params = {key: value for key, value in params.items() if key not in ("upload", "upload_name")}
    upload_id = None
    if uploaded is not None:
        params.pop("folder", None)
        upload_id = import_upload_stage(uploaded=uploaded)
        params.update(upload=upload_id, upload_name=uploaded.name or "upload.zip")
    try:
        return job_create(kind=Job.Kind.IMPORT, params=params, created_by=created_by)
    except BaseException:
        if upload_id is not None:
            shutil.rmtree(staging_folder(upload_id), ignore_errors=True)
        raise
