"""The browser import's guards and job (issue 13 item 4): a zip's members refused before anything is kept or
unpacked, folders confined to IMPORT_ROOTS (``..``, absolute paths and symlinks out, for the folder and for
each file), bad rows kept on the failed job, a clean import, and a cancel that leaves nothing behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.errors import ApplicationError
from annotator.models import Dataset, Finding, Image, Job
from annotator.services.dataset_imports import STAGED_ZIP, run_import, staging_folder
from annotator.services.import_jobs import dataset_import_job_create
from annotator.services.job_runs import job_run
from annotator.services.job_state import JobReporter, job_cancel
from annotator.services.jobs import job_create
from mining.progress import Cancelled
from tests.annotator.import_zips import dataset_folder, folder_zip, zip_bytes

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG not really"


@pytest.fixture(autouse=True)
def staging(settings, tmp_path: Path) -> Path:
    settings.IMPORT_STAGING_DIR = tmp_path / "staging"
    return settings.IMPORT_STAGING_DIR


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def start_upload(data: bytes, name: str = "cases.zip", **params) -> Job:
    upload = SimpleUploadedFile(name, data, content_type="application/zip")
    return dataset_import_job_create(params={"name": "Uploaded", **params}, uploaded=upload, created_by=None)


def link(path: Path) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(str(path))
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


# -- zips: every refusal before anything is kept --------------------------------------------------------

REFUSED_ZIPS = {
    "absolute": (zip_bytes(("/etc/cron.d/x.png", PNG)), "has an absolute path"),
    "windows drive": (zip_bytes(("C:/x.png", PNG)), "has an absolute path"),
    "dot-dot": (zip_bytes(("img/../../evil.png", PNG)), "leads out of the archive with '..'"),
    "backslash dot-dot": (zip_bytes(("..\\evil.png", PNG)), "leads out of the archive with '..'"),
    "symlink": (zip_bytes(("manifest.csv", b"image\n"), (link(Path("img/a.png")), b"/etc/passwd")), "symbolic link"),
    "twice": (zip_bytes(("a.png", PNG), ("./a.png", PNG)), "appears twice"),
    "not a zip": (b"PK but not a zip at all", "not a readable zip file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_ZIPS))
def test_a_zip_with_a_bad_member_is_refused_before_anything_is_kept(case, staging, media_root):
    data, message = REFUSED_ZIPS[case]
    with pytest.raises(ApplicationError, match=message):
        start_upload(data)
    assert files_under(staging) == [] and files_under(media_root) == []
    assert not Job.objects.exists()


def test_a_zip_bomb_is_refused_by_its_compression_ratio(settings, staging):
    bomb = zip_bytes(("manifest.csv", b"image,patient_id,label\n"), ("img/zeros.png", bytes(8 << 20)))
    assert len(bomb) < 50_000  # 8 MiB of zeros in a few KiB
    with pytest.raises(ApplicationError, match=r"zip member 'img/zeros.png' is compressed [\d,]+ to 1 .*zip bomb"):
        start_upload(bomb)
    # Many small members compressing well are as much a bomb together: the whole archive's ratio.
    settings.IMPORT_ZIP_MAX_RATIO = 5
    many = zip_bytes(*((f"img/{i}.png", bytes(4096)) for i in range(20)))
    with pytest.raises(ApplicationError, match=r"the zip is compressed [\d,]+ to 1"):
        start_upload(many)
    assert files_under(staging) == []


def test_too_many_members_too_many_bytes_and_an_oversized_upload_are_refused(settings, staging):
    settings.IMPORT_ZIP_MAX_MEMBERS = 3
    with pytest.raises(ApplicationError, match="holds 4 members; at most 3"):
        start_upload(zip_bytes(*((f"{i}.png", PNG) for i in range(4))))
    settings.IMPORT_ZIP_MAX_BYTES = 1000
    noise = bytes(range(256)) * 8  # 2,048 bytes that barely compress
    with pytest.raises(ApplicationError, match="unpacks to 2,048 bytes; at most 1,000"):
        start_upload(zip_bytes(("noise.png", noise)))
    settings.IMPORT_UPLOAD_MAX_BYTES = 100
    with pytest.raises(ApplicationError, match="bytes; dataset zips are limited to 100") as refused:
        start_upload(zip_bytes(("noise.png", noise)))
    assert refused.value.status == 413
    assert files_under(staging) == []


def test_the_worker_checks_a_staged_zip_again_before_unpacking(staging, media_root):
    """A zip that reached the staging folder by another way is refused by the job, nothing unpacked."""
    staged = staging / ("a" * 32)
    staged.mkdir(parents=True)
    (staged / STAGED_ZIP).write_bytes(zip_bytes(("ok.png", PNG), (link(Path("a.png")), b"/etc/passwd")))
    job = Job.objects.create(
        kind=Job.Kind.IMPORT,
        params={"name": "Sneaky", "kind": "mammogram", "layout": "manifest", "seed": 0, "upload": "a" * 32},
    )
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    assert "zip member 'a.png' is a symbolic link" in Job.objects.get(pk=job.pk).error
    assert not staged.exists() and files_under(media_root) == []


def test_an_upload_id_that_is_not_one_of_ours_is_refused():
    with pytest.raises(ApplicationError, match="unknown upload"):
        staging_folder("../../etc")
    for upload in ("b" * 32, "../../etc", 7):  # an id never staged, a path, not a string (the job API's way in)
        with pytest.raises(ApplicationError, match="unknown upload"):
            job_create(kind=Job.Kind.IMPORT, params={"name": "X", "upload": upload})
    # The page's way in takes no upload id from its parameters: only the zip it staged itself.
    with pytest.raises(ApplicationError, match="either an uploaded zip or a folder"):
        dataset_import_job_create(params={"name": "X", "upload": "b" * 32}, uploaded=None, created_by=None)


# -- a zip imported by the job: bad rows listed, nothing imported; fixed, imported ------------------------


def test_a_zip_with_a_bad_row_imports_nothing_and_the_job_lists_its_line(tmp_path, staging, media_root):
    folder = dataset_folder(tmp_path / "cases", bad_label_line=4)
    job = start_upload(folder_zip(folder, top="cases"))
    assert job.params["upload_name"] == "cases.zip" and (staging_folder(job.params["upload"]) / STAGED_ZIP).is_file()
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    assert job.result == {
        "errors": [{"line": 4, "reason": "unknown label 'malignent' (use normal / benign / malignant)"}]
    }
    assert job.message == "Failed: 1 bad row in manifest"
    assert not Dataset.objects.exists() and not Image.objects.exists() and files_under(media_root) == []
    assert files_under(staging) == []  # the staged zip and what was unpacked

    fixed = start_upload(folder_zip(dataset_folder(tmp_path / "fixed")), name="fixed.zip")
    assert job_run(job_id=fixed.pk) == Job.Status.SUCCEEDED
    fixed.refresh_from_db()
    dataset = Dataset.objects.get(name="Uploaded")
    assert fixed.result == {"dataset": dataset.pk, "name": "Uploaded", "images": 6}
    assert fixed.dataset == dataset and fixed.progress == 1.0
    assert dataset.images.count() == 6 and Finding.objects.filter(image__dataset=dataset).count() == 4
    assert dataset.description.startswith("Imported from fixed (manifest), 6 images")
    assert files_under(staging) == []


def test_a_cancelled_import_leaves_no_dataset_no_rows_and_no_files(tmp_path, staging, media_root):
    job = start_upload(folder_zip(dataset_folder(tmp_path / "cases", n_patients=6)))
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    seen: list[str] = []

    class CancelWhileStoring(JobReporter):
        """The real reporter, cancelled through the real service once a few images are stored."""

        def progress(self, done: int, total: int, message: str = "") -> None:
            seen.append(message)
            super().progress(done, total, message)
            if message == "stored 3/12 images":
                job_cancel(job=job)

    with pytest.raises(Cancelled):
        run_import(Job.objects.get(pk=job.pk), CancelWhileStoring(job_id=job.pk, min_interval=0))
    assert "unpacked 23/23 files" in seen and "checked 12/12 images" in seen and seen[-1] == "stored 3/12 images"
    assert not Dataset.objects.exists() and not Image.objects.exists() and not Finding.objects.exists()
    assert files_under(media_root) == [] and files_under(staging) == []


# -- folders under IMPORT_ROOTS -------------------------------------------------------------------------


@pytest.fixture
def root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    dataset_folder(root / "cases")
    settings.IMPORT_ROOTS = [str(root)]
    return root


def start_folder(folder: str, name: str = "From folder") -> Job:
    return dataset_import_job_create(params={"name": name, "folder": folder}, uploaded=None, created_by=None)


def test_a_folder_under_the_root_imports(root):
    job = start_folder("cases")
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    assert Dataset.objects.get(name="From folder").images.count() == 6
    absolute = start_folder(str(root / "cases"), name="Absolute")  # an absolute path inside the root is fine
    assert job_run(job_id=absolute.pk) == Job.Status.SUCCEEDED


def test_folder_import_is_off_without_roots(settings):
    settings.IMPORT_ROOTS = []
    with pytest.raises(ApplicationError, match="IMPORT_ROOTS setting is empty"):
        start_folder("cases")


def test_dot_dot_absolute_escapes_and_a_symlinked_folder_are_refused(root, tmp_path):
    outside = dataset_folder(tmp_path / "outside")
    (root / "escape").symlink_to(outside)
    refused = {
        "../outside": "may not contain '..'",
        "cases/../../outside": "may not contain '..'",
        str(outside): "is outside the import roots",
        "/etc": "is outside the import roots",
        "escape": "is outside the import roots",  # a symlink inside the root, leading out
        "missing": "does not exist under the import roots",
    }
    for given, message in refused.items():
        with pytest.raises(ApplicationError, match=message):
            start_folder(given)
    assert not Job.objects.exists()


def test_a_symlinked_image_or_manifest_leading_out_is_a_bad_row(root, tmp_path, media_root):
    secret = tmp_path / "secret.png"
    (root / "cases" / "img" / "p001_CC.png").rename(secret)
    (root / "cases" / "img" / "p001_CC.png").symlink_to(secret)
    job = start_folder("cases")
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    # p001's CC view is on line 6: p000's two views take lines 2-5 (a malignant mass and the skin line each).
    assert job.result["errors"] == [
        {"line": 6, "reason": "image p001_CC.png is a link leading outside the import root"}
    ]
    assert not Dataset.objects.exists() and files_under(media_root) == []

    (root / "cases" / "manifest.csv").rename(tmp_path / "manifest.csv")
    (root / "cases" / "manifest.csv").symlink_to(tmp_path / "manifest.csv")
    again = start_folder("cases", name="Again")
    assert job_run(job_id=again.pk) == Job.Status.FAILED
    assert "manifest manifest.csv is a link leading outside the import root" in Job.objects.get(pk=again.pk).error


def test_a_folder_swapped_for_a_link_after_the_job_was_queued_is_refused_when_it_runs(root, tmp_path):
    job = start_folder("cases")
    (root / "cases").rename(tmp_path / "moved")
    (root / "cases").symlink_to(tmp_path / "moved")
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    assert "is outside the import roots" in Job.objects.get(pk=job.pk).error
    assert not Dataset.objects.exists()


def test_bad_rows_in_the_job_api_are_for_admins_only(root, admin_user, expert_user, researcher_user):
    from tests.factories import client_for

    (root / "cases" / "img" / "p001_CC.png").unlink()
    job = start_folder("cases")
    job_run(job_id=job.pk)
    reason = {"line": 6, "reason": "image file not found: img/p001_CC.png"}
    assert client_for(admin_user).get(f"/api/jobs/{job.pk}/").json()["result"] == {"errors": [reason]}
    for user in (expert_user, researcher_user):
        assert client_for(user).get(f"/api/jobs/{job.pk}/").json()["result"] == {}
