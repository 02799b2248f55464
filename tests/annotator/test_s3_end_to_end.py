"""The whole product with media in an S3 bucket (a real moto S3 server) and empty local MEDIA_ROOTs, in
the test process (web side) and in a real Celery worker: import a small demo dataset, extract patches,
train a tiny model, mine its units in two shards, open a unit's survey page and fetch every image it
shows (presigned redirects; sprites streamed), export the unit table, explain an image. Every file a row
names is an object in the bucket, and no process wrote a file under its MEDIA_ROOT.

CI runs it once, in its embedded pass (SQLite + filesystem broker; its PostgreSQL + Redis pass carries the
fault injection): on the deployment configuration it runs only with DEEPMINER_S3_END_TO_END=1. The storage
layer's own tests (test_s3_media.py) run in both passes."""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import models
from PIL import Image as PILImage

from annotator.models import Job, TopActivation, TrainedModel, Unit
from annotator.services.jobs import job_create
from tests.annotator.test_worker_integration import wait_for
from tests.conftest import WorkerProcess, _purge_broker
from tests.factories import client_for
from tests.s3_media import S3Media, moto_endpoint_fixture, s3_media_fixture  # noqa: F401  (fixtures)

DEPLOYMENT = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        DEPLOYMENT and not os.environ.get("DEEPMINER_S3_END_TO_END"),
        reason="runs in CI's embedded pass; DEEPMINER_S3_END_TO_END=1 runs it on PostgreSQL too",
    ),
]


def _run(job: Job, timeout: float = 600) -> Job:
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).first(), timeout=timeout)
    assert done.status == Job.Status.SUCCEEDED, done.error
    return done


def _png_size(data: bytes) -> tuple[int, int]:
    return PILImage.open(io.BytesIO(data)).size


def _fetched(client, url: str) -> bytes:
    """What a browser gets for ``url``: the app's bytes, or the bucket's behind the presigned redirect."""
    response = client.get(url)
    if response.status_code == 302:
        with urllib.request.urlopen(response["Location"], timeout=30) as signed:
            return signed.read()
    assert response.status_code == 200, (url, response.status_code)
    return b"".join(response.streaming_content)


def _named_files() -> set[str]:
    """Every media name a row of any table holds (every FileField of every model)."""
    from django.apps import apps

    names: set[str] = set()
    for model in apps.get_app_config("annotator").get_models():
        fields = [f.name for f in model._meta.get_fields() if isinstance(f, models.FileField)]
        for row in model.objects.values_list(*fields) if fields else []:
            names.update(name for name in row if name)
    return names


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_import_patches_train_mine_survey_and_export_with_media_in_a_bucket(
    s3_media: S3Media, media_root: Path, tmp_path: Path, monkeypatch, admin_user
) -> None:
    from annotator.demo import demo_dataset_create
    from annotator.services.explanations import explanation_get

    worker_media = tmp_path / "worker-media"  # the worker's MEDIA_ROOT: must stay empty too
    worker_media.mkdir()
    for name, value in {**s3_media.environment(), "MEDIA_CACHE_DIR": str(tmp_path / "worker-cache")}.items():
        monkeypatch.setenv(name, value)
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=16, seed=3, name="s3 demo")
    assert s3_media.keys("images/") and _files_under(media_root) == []

    _purge_broker()
    worker = WorkerProcess(worker_media, tmp_path / "worker.log")
    try:
        _run(job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset))
        train = _run(job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1, "patch_size": 64}))
        trained = TrainedModel.objects.get(job=train)
        assert s3_media.read(trained.checkpoint.name)[:2] == b"PK"  # torch's zip format, whole in the bucket
        params = {"model": trained.pk, "top_n": 8, "splits": ["train"], "shards": 2}
        _run(job_create(kind=Job.Kind.MINE, dataset=dataset, params=params))
    finally:
        worker.stop()
        print(f"--- worker log ---\n{worker.log()[-4000:]}")
    assert "deepminer.mine_shard" in worker.log()  # the shards' states went through the bucket
    assert s3_media.keys("shards/") == []  # and were cleaned up there

    unit = Unit.objects.filter(model=trained, top_activations__isnull=False).exclude(mask_sprite="").first()
    assert unit is not None and unit.mask_sprite.name.startswith("masks/")
    client = client_for(admin_user)
    page = client.get(f"/units/{unit.pk}/").content.decode()
    crops = re.findall(r'<img src="(/media/patches/[^"]+)"', page)
    assert len(crops) == TopActivation.objects.filter(unit=unit).count() > 0
    sprite = re.search(r'data-mask-sprite="(/media/[^"]+)"', page)
    assert sprite is not None
    for url in crops:
        assert client.get(url).status_code == 302  # a presigned URL, short-lived
        assert _png_size(_fetched(client, url))[0] > 0
    sprite_response = client.get(sprite.group(1))
    assert sprite_response.status_code == 200  # streamed: the page reads its pixels on a canvas
    assert b"".join(sprite_response.streaming_content) == s3_media.read(unit.mask_sprite.name)
    assert client_for(None).get(crops[0]).status_code == 302 and "login" in client_for(None).get(crops[0])["Location"]

    export = client_for(admin_user).get(f"/models/{trained.pk}/units/export.csv")
    assert export.status_code == 200
    body = b"".join(export.streaming_content) if export.streaming else export.content
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == Unit.objects.filter(model=trained, selected_for__gt="").count() > 0

    # The web side loads the checkpoint from the bucket (through its own local cache) to explain an image.
    image = dataset.images.filter(split="holdout").first() or dataset.images.first()
    explanation = explanation_get(trained=trained, image=image)
    assert _png_size(s3_media.read(explanation.class_map.name))[0] > 0

    missing = _named_files() - set(s3_media.keys())
    assert not missing, sorted(missing)[:5]  # no row names a missing object
    assert _files_under(media_root) == [] and _files_under(worker_media) == []


@pytest.mark.browser
def test_the_survey_page_shows_bucket_media_in_chromium_under_the_csp(
    s3_media: S3Media, settings, live_server, browser_page, expert_user
) -> None:
    """Crops load from presigned URLs (the bucket's origin in img-src, as settings.py adds it) and the mask
    overlay reads the streamed sprite's pixels from a canvas without a cross-origin taint."""
    from config.settings import _bucket_origins
    from tests.annotator.test_browser_dashboard import sign_in
    from tests.factories import mined_unit

    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"]["img-src"] += _bucket_origins(**s3_media.storage_options())
    settings.CONTENT_SECURITY_POLICY = policy
    unit = mined_unit(n_top=16, n_images=2)
    page = browser_page
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if message.type == "error" else None)
    fetched: list[tuple[str, int]] = []
    page.on("response", lambda response: fetched.append((response.url.split("?", 1)[0], response.status)))
    sign_in(page, live_server.url, expert_user.username)
    page.goto(f"{live_server.url}/units/{unit.pk}/")
    page.wait_for_function("() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth)")
    bucket = f"{s3_media.endpoint}/{s3_media.bucket}/patches/"
    assert len({url for url, status in fetched if url.startswith(bucket) and status == 200}) == 16
    page.check("input[name=view][value=mask]")
    page.wait_for_function("() => document.getElementById('patch-grid').dataset.view === 'mask'")
    alpha = page.wait_for_function(
        """() => {
          const canvas = document.querySelector('.tile canvas');
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let sum = 0;
          for (let i = 3; i < data.length; i += 4) sum += data[i];
          return sum;
        }"""
    ).json_value()
    assert alpha > 0  # the overlay was drawn: the sprite's pixels were readable
    assert [text for text in refused if "Content Security Policy" in text] == []
    failed = [(url, status) for url, status in fetched if status >= 400 and not url.endswith("/favicon.ico")]
    assert failed == []
