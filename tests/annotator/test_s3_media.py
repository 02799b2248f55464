"""Media in an S3 bucket (a real moto S3 server, tests/s3_media.py): every write lands whole before a row
names it, nothing is left of a failed step, MEDIA_ROOT stays empty, workers' local copies stay within the
cache's cap, and the media view gives signed-in users a presigned URL or the bytes, never the truth a
blind expert may not see."""

from __future__ import annotations

import io
import os
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.files import (
    delete_quietly,
    delete_tree_quietly,
    media_exists,
    media_local_file,
    media_read_bytes,
    read_mask,
    read_png,
    write_bytes_atomic,
    write_local_file_atomic,
    write_png_atomic,
    write_tree_atomic,
)
from annotator.media_cache import LocalFileCache
from annotator.media_objects import media_copy_all, media_object_names
from annotator.models import Dataset, Finding, Image
from tests.factories import DatasetFactory, FindingFactory, ImageFactory
from tests.s3_media import S3Media, moto_endpoint_fixture, s3_media_fixture  # noqa: F401  (fixtures)


def _media_root_files(media_root: Path) -> list[Path]:
    return [path for path in media_root.rglob("*") if path.is_file()]


def test_writes_and_reads_go_to_the_bucket_and_never_to_media_root(s3_media: S3Media, media_root: Path) -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True
    assert write_png_atomic("images/a.png", pixels) == "images/a.png"
    write_png_atomic("masks/m.png", mask)
    write_bytes_atomic("shards/s.pt", b"state")
    assert s3_media.keys() == ["images/a.png", "masks/m.png", "shards/s.pt"]
    np.testing.assert_array_equal(read_png("images/a.png"), pixels)
    np.testing.assert_array_equal(read_mask("masks/m.png"), mask)
    assert media_read_bytes("shards/s.pt") == b"state" == s3_media.read("shards/s.pt")
    assert media_exists("images/a.png") and not media_exists("images/none.png") and not media_exists("")
    with pytest.raises(FileNotFoundError):
        media_read_bytes("images/none.png")
    assert _media_root_files(media_root) == []


def test_a_file_written_through_a_local_path_appears_whole_or_not_at_all(s3_media: S3Media, media_root) -> None:
    with pytest.raises(RuntimeError), write_local_file_atomic("checkpoints/half.pt") as path:
        path.write_bytes(b"half a checkpoint")
        raise RuntimeError("killed mid-save")
    assert s3_media.keys() == []  # nothing a row could point at
    with write_local_file_atomic("checkpoints/whole.pt") as path:
        path.write_bytes(b"w" * 1000)
        assert s3_media.keys() == []  # not visible while it is being written
    assert s3_media.read("checkpoints/whole.pt") == b"w" * 1000
    # The writer keeps its copy in the local cache: the next job on this worker loads it without a download.
    cached = media_local_file("checkpoints/whole.pt")
    assert cached.read_bytes() == b"w" * 1000 and not path.exists()
    assert _media_root_files(media_root) == []


def test_a_folder_is_written_with_its_completeness_mark_last(s3_media: S3Media) -> None:
    def tiles(fail: bool):
        yield "image_files/0/0_0.jpg", b"t0"
        yield "image_files/1/0_0.jpg", b"t1"
        if fail:
            raise OSError("worker killed")
        yield "image.dzi", b"<Image/>"

    with pytest.raises(OSError):
        write_tree_atomic("deepzoom/a", tiles(fail=True))
    # Tiles went up as they came; the mark never did, so readers treat the folder as absent and remake it.
    assert s3_media.keys("deepzoom/a/") == ["deepzoom/a/image_files/0/0_0.jpg"]
    assert not media_exists("deepzoom/a/image.dzi")
    assert write_tree_atomic("deepzoom/a", tiles(fail=False)) is True
    assert s3_media.read("deepzoom/a/image.dzi") == b"<Image/>"
    assert write_tree_atomic("deepzoom/a", tiles(fail=False)) is False  # another writer completed it first


def test_clean_up_removes_objects_ignores_what_is_gone_and_never_the_whole_bucket(s3_media: S3Media) -> None:
    kept = write_bytes_atomic("kept/a.bin", b"a")
    write_tree_atomic("deepzoom/7", [("a_files/0/0_0.png", b"png"), ("a.dzi", b"<Image/>")])
    written = write_bytes_atomic("rolled-back/b.bin", b"b")
    delete_quietly([written, "rolled-back/never-written.bin", ""])
    delete_tree_quietly("deepzoom/7")
    delete_tree_quietly("deepzoom/never-written")
    for nothing in ("", "/"):
        delete_tree_quietly(nothing)
    assert s3_media.keys() == [kept]


def test_the_local_cache_keeps_at_most_its_cap_evicting_the_least_recently_used(tmp_path: Path) -> None:
    cache = LocalFileCache(tmp_path / "cache", max_bytes=250)
    fetched: list[str] = []

    def fetcher(name: str):
        def fetch(handle) -> None:
            fetched.append(name)
            handle.write(name.encode()[:1] * 100)

        return fetch

    a = cache.get("checkpoints/a.pt", fetcher("a"))
    b = cache.get("checkpoints/b.pt", fetcher("b"))
    os.utime(a, (1_000, 1_000))
    os.utime(b, (2_000, 2_000))
    assert cache.get("checkpoints/a.pt", fetcher("a")) == a  # a hit: a is now the most recently used
    assert fetched == ["a", "b"]
    c = cache.get("checkpoints/c.pt", fetcher("c"))  # 300 bytes > 250: the least recently used (b) goes
    assert (a.is_file(), b.exists(), c.read_bytes()) == (True, False, b"c" * 100)
    assert cache.size() == 200 <= cache.max_bytes
    big = LocalFileCache(tmp_path / "cache", max_bytes=50).get("checkpoints/big.pt", fetcher("big"))
    assert big.is_file() and sorted(p.name for p in (tmp_path / "cache").iterdir()) == [big.name]  # alone, kept
    assert cache.get("checkpoints/b.pt", fetcher("b")).read_bytes() == b"b" * 100 and fetched[-1] == "b"


def test_workers_local_copies_of_bucket_objects_stay_within_the_cap(s3_media: S3Media, settings) -> None:
    settings.MEDIA_CACHE_MAX_BYTES = 2500
    for name in ("checkpoints/1.pt", "checkpoints/2.pt", "checkpoints/3.pt"):
        write_bytes_atomic(name, name.encode() * 100)  # 1,600 bytes each
    copies = [media_local_file(name) for name in ("checkpoints/1.pt", "checkpoints/2.pt", "checkpoints/3.pt")]
    assert copies[2].read_bytes() == b"checkpoints/3.pt" * 100
    cache_files = list(Path(settings.MEDIA_CACHE_DIR).iterdir())
    assert cache_files == [copies[2]] and sum(p.stat().st_size for p in cache_files) <= 2500
    write_bytes_atomic("checkpoints/3.pt", b"rewritten")  # a rewrite in this process drops its stale copy
    assert media_local_file("checkpoints/3.pt").read_bytes() == b"rewritten"


@pytest.mark.django_db
def test_an_import_stores_every_file_before_its_row_and_a_failed_one_leaves_nothing(
    s3_media: S3Media, media_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from annotator.demo import demo_dataset_create
    from annotator.importing import storing

    def rows_fail(*args, **kwargs):
        raise RuntimeError("database gone mid-import")

    with monkeypatch.context() as patched:
        patched.setattr(storing, "_create_rows", rows_fail)
        with pytest.raises(RuntimeError):
            demo_dataset_create(folder=tmp_path / "first", n_images=3, seed=1, name="fails")
    assert Dataset.objects.count() == 0 and s3_media.keys() == []  # no object outlives the rolled-back rows

    dataset, _ = demo_dataset_create(folder=tmp_path / "second", n_images=3, seed=1, name="s3 import")
    names = [
        name
        for image in Image.objects.filter(dataset=dataset)
        for name in (image.file.name, image.display.name, image.thumbnail.name, image.overlay.name)
    ] + [finding.mask.name for finding in Finding.objects.filter(image__dataset=dataset)]
    assert len(names) >= 12 and set(names) <= set(s3_media.keys())  # no row names a missing object
    assert _media_root_files(media_root) == []


def _blind_mammogram():
    image = ImageFactory(dataset=DatasetFactory(name="Blind cohort"), label="malignant")
    image.overlay = write_png_atomic("overlays/outlines-p1.png", np.zeros((image.height, image.width, 4), np.uint8))
    image.save()
    return image, FindingFactory(image=image)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.django_db
def test_the_media_view_redirects_signed_in_users_to_a_short_lived_presigned_url(
    s3_media: S3Media, client, expert_user, researcher_user
) -> None:
    image, finding = _blind_mammogram()
    url = f"/media/{image.file.name}"
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(expert_user)
    response = client.get(url)
    assert response.status_code == 302 and response["Cache-Control"] == "private, no-store"
    signed = urlsplit(response["Location"])
    assert f"{signed.scheme}://{signed.netloc}" == s3_media.endpoint
    assert signed.path == f"/{s3_media.bucket}/{image.file.name}"
    assert parse_qs(signed.query)["X-Amz-Expires"] == ["300"]
    assert _fetch(response["Location"]) == s3_media.read(image.file.name)
    assert client.get("/media/images/none.png").status_code == 404
    assert client.get(f"/media/images/../{image.file.name}").status_code == 404
    # Blind: the outlines and the mask are as if they did not exist, however spelled.
    for name in (
        image.overlay.name,
        image.overlay.name.replace("/", "/./"),
        finding.mask.name,
        f"/{finding.mask.name}",
    ):
        assert client.get(f"/media/{name}").status_code == 404, name
    client.force_login(researcher_user)
    assert client.get(f"/media/{image.overlay.name}").status_code == 302
    mask = client.get(f"/media/{finding.mask.name}")  # streamed: the survey reads mask sprites on a canvas
    assert mask.status_code == 200 and b"".join(mask.streaming_content) == s3_media.read(finding.mask.name)


@pytest.mark.django_db
def test_the_media_view_streams_from_the_bucket_without_redirects(
    s3_media: S3Media, settings, client, expert_user
) -> None:
    settings.MEDIA_REDIRECT = False
    image, _ = _blind_mammogram()
    client.force_login(expert_user)
    response = client.get(f"/media/{image.file.name}")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"
    body = b"".join(response.streaming_content)
    assert body == s3_media.read(image.file.name)
    assert PILImage.open(io.BytesIO(body)).size == (image.width, image.height)
    assert client.get(f"/media/{image.overlay.name}").status_code == 404


def test_every_object_is_listed_and_copied_to_another_storage(s3_media: S3Media, settings, tmp_path: Path) -> None:
    write_bytes_atomic("images/a.png", b"a")
    write_tree_atomic("deepzoom/x", [("image_files/0/0_0.jpg", b"t"), ("image.dzi", b"d")])
    settings.STORAGES = {
        **settings.STORAGES,
        "local": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path / "copy"}},
    }
    names = sorted(media_object_names("default"))
    assert names == ["deepzoom/x/image.dzi", "deepzoom/x/image_files/0/0_0.jpg", "images/a.png"]
    assert media_copy_all(source="default", target="local") == (3, 0)
    assert (tmp_path / "copy/deepzoom/x/image_files/0/0_0.jpg").read_bytes() == b"t"
    assert media_copy_all(source="default", target="local") == (0, 3)  # a re-run skips what is there
    assert sorted(media_object_names("local")) == names


@pytest.mark.slow  # three settings loads in fresh interpreters: over a minute on a busy two-core machine
def test_the_settings_read_the_bucket_from_the_environment(tmp_path: Path) -> None:
    """DEEPMINER_S3_BUCKET and the AWS_* variables make the default storage the bucket, and the bucket's
    origin joins the CSP's img-src (presigned redirects); nothing set: the filesystem and 'self' only."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = (
        "import json; from django.conf import settings; from annotator.files import media_storage; "
        "s = media_storage(); print(json.dumps([type(s).__name__, getattr(s, 'bucket_name', None), "
        "getattr(s, 'endpoint_url', None), settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src']]))"
    )
    bucket_env = {
        "DEEPMINER_S3_BUCKET": "media",
        "AWS_S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }

    def probed(extra: dict[str, str]) -> list:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEEPMINER_S3", "DEEPMINER_MEDIA"))}
        env.update({"DEEPMINER_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "config.settings", **extra})
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert probed(bucket_env) == [
        "S3Storage",
        "media",
        "http://minio:9000",
        ["'self'", "data:", "http://minio:9000", "http://media.minio:9000"],
    ]
    assert probed({**bucket_env, "DEEPMINER_MEDIA_REDIRECT": "false"})[3] == ["'self'", "data:"]
    assert probed({}) == ["FileSystemStorage", None, None, ["'self'", "data:"]]
