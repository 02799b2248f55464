"""Steps of the installation-move test, each run as its own process on one installation (the environment's
DATABASE_URL, MEDIA_ROOT and DEEPMINER_VAR_DIR), printing what it found as one JSON line.

    python -m tests.installation_steps build FOLDER   a demo-sized installation with a row in every table
    python -m tests.installation_steps inspect         counts, one label's versions and history, every file's SHA-256
    python -m tests.installation_steps use             the app at work on it: new rows, a new version, a media read
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import numpy as np  # noqa: E402
from django.apps import apps  # noqa: E402
from django.contrib.admin.models import CHANGE, LogEntry  # noqa: E402
from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.files.storage import default_storage  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import FileField  # noqa: E402
from django.test import Client  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from annotator.models import (  # noqa: E402
    AnnotationChange,
    Dataset,
    FractureDescriptor,
    Image,
    Job,
    SentenceModel,
    Unit,
    UnitAnnotation,
    UnitConsensus,
)

MOVED_LABEL_NOTES = "spiculated? naïve — ünïcode ✓"


def _shift_content_type_ids() -> None:
    """Give annotator.dataset a content type id a fresh migrate does not (as an installation migrated over
    months has), so only a natural-key match can keep its permissions and admin log right."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.contenttypes.management import create_contenttypes

    ContentType.objects.filter(app_label="annotator", model="dataset").delete()
    create_contenttypes(apps.get_app_config("annotator"), verbosity=0)
    create_permissions(apps.get_app_config("annotator"), verbosity=0)


def build(folder: Path) -> dict[str, Any]:
    from axes.models import AccessLog
    from django_celery_results.models import ChordCounter, GroupResult, TaskResult

    from annotator.demo import demo_dataset_create, demo_fracture_dataset_create, demo_users_ensure
    from annotator.files import write_bytes_atomic
    from annotator.services.annotations import unit_annotation_save, unit_consensus_save
    from annotator.services.explanations import explanation_make
    from annotator.services.fractures import fracture_descriptor_save
    from annotator.services.uploads import upload_create
    from tests.factories import JobFactory, TrainedModelFactory, UserFactory, mined_unit, random_model

    call_command("migrate", verbosity=0)
    _shift_content_type_ids()
    demo_users_ensure(credentials_file=folder / "credentials")
    admin, expert, researcher = (User.objects.get(username=name) for name in ("admin", "expert", "researcher"))
    second = UserFactory(username="second-expert", groups=["expert"])
    expert.user_permissions.add(Permission.objects.get(codename="change_dataset"))
    Group.objects.get(name="admin").permissions.add(Permission.objects.get(codename="view_dataset"))

    mammograms, _ = demo_dataset_create(folder=folder / "mammograms", n_images=8, seed=0)
    hips, _ = demo_fracture_dataset_create(folder=folder / "hips", n_images=6, seed=0)
    model = random_model(dataset=mammograms)
    units = [mined_unit(model=model, n_top=8, n_images=2, seed=seed, selection_rank=seed + 1) for seed in (0, 1)]

    spiculated = [{"description": "spiculated edge", "concept": "mass_margin.spiculated", "association": "malignant"}]
    unit_annotation_save(unit=units[0], expert=expert, version=0, recognizable="unsure", notes="first look")
    unit_annotation_save(unit=units[0], expert=expert, version=1, recognizable="yes", phenomena=spiculated)
    label = unit_annotation_save(
        unit=units[0], expert=expert, version=2, recognizable="yes", phenomena=spiculated, confidence=4,
        notes=MOVED_LABEL_NOTES,
    )  # fmt: skip
    unit_annotation_save(unit=units[0], expert=second, version=0, recognizable="no", notes="vessel")
    unit_consensus_save(unit=units[0], admin=admin, version=0, recognizable="yes", concept="mass_margin.spiculated")
    unit_consensus_save(
        unit=units[0], admin=admin, version=1, recognizable="yes", concept="mass_margin.spiculated",
        association="malignant", description="spiculated margin",
    )  # fmt: skip
    hip = hips.images.order_by("pk").first()
    assert hip is not None
    fracture_descriptor_save(
        image=hip, expert=expert, version=0, fracture=True, displacement="undisplaced", location="transcervical"
    )
    fracture_descriptor_save(
        image=hip, expert=expert, version=1, fracture=True, displacement="mildly displaced", comminuted=True,
        location="subcapital",
    )  # fmt: skip

    explanation_make(trained=model, image=mammograms.images.order_by("pk").first())
    buffer = io.BytesIO()
    PILImage.fromarray(np.linspace(0, 255, 64 * 48, dtype=np.uint8).reshape(64, 48)).save(buffer, format="PNG")
    upload = upload_create(owner=researcher, uploaded=SimpleUploadedFile("mine.png", buffer.getvalue()))
    explanation_make(trained=model, upload=upload)
    classifier = TrainedModelFactory(dataset=hips, job__dataset=hips, patch_params={"whole_image": True})
    SentenceModel.objects.create(
        job=JobFactory(kind=Job.Kind.CAPTION, dataset=hips, status=Job.Status.SUCCEEDED),
        classifier=classifier,
        dataset=hips,
        checkpoint=write_bytes_atomic("checkpoints/sentences-demo.pt", b"generator weights"),
        source="labels",
        vocabulary=["<pad>", "there", "is", "a", "fracture"],
        metrics={"bleu": [0.9, 0.8, 0.7, 0.6], "examples": [{"image": hip.pk, "generated": "there is a fracture"}]},
    )
    JobFactory(
        kind=Job.Kind.TRAIN, dataset=mammograms, status=Job.Status.FAILED, error="out of memory", params={"lr": 1e-3}
    )
    LogEntry.objects.create(
        user=admin,
        content_type=ContentType.objects.get_for_model(Dataset),
        object_id=str(mammograms.pk),
        object_repr=mammograms.name,
        action_flag=CHANGE,
        change_message='[{"changed": {"fields": ["Description"]}}]',
    )
    TaskResult.objects.create(task_id="task-1", status="SUCCESS", result='{"ok": true}')
    GroupResult.objects.create(group_id="group-1", result='["task-1"]')
    ChordCounter.objects.create(group_id="group-1", sub_tasks='[["task-1", null]]', count=1)
    AccessLog.objects.create(
        username="expert", ip_address="127.0.0.1", user_agent="pytest", http_accept="*/*", path_info="/login/"
    )
    Client().force_login(expert)  # a session, which stays behind
    empty = sorted(
        model._meta.label
        for model in apps.get_models(include_auto_created=True)
        if not model._base_manager.exists() and not model._meta.app_label.startswith("axes")
    )
    return {"label": label.pk, "unit": units[0].pk, "other_unit": units[1].pk, "hip": hip.pk, "empty": empty}


def _file_checksums() -> dict[str, str | None]:
    """SHA-256 of every file a row names, read through the installation's storage; None where it is missing."""
    names = {
        name
        for model in apps.get_models(include_auto_created=True)
        for field in model._meta.concrete_fields
        if isinstance(field, FileField)
        for name in model._base_manager.exclude(**{field.attname: ""}).values_list(field.attname, flat=True)
    }
    checksums: dict[str, str | None] = {}
    for name in sorted(names):
        if not default_storage.exists(name):
            checksums[name] = None
            continue
        with default_storage.open(name, "rb") as handle:
            checksums[name] = hashlib.sha256(handle.read()).hexdigest()
    return checksums


def inspect(label_pk: int) -> dict[str, Any]:
    label = UnitAnnotation.objects.get(pk=label_pk)
    history = AnnotationChange.objects.filter(target="unit_annotation", target_id=label_pk).order_by("version")
    dataset_type = ContentType.objects.get_for_model(Dataset)
    expert = User.objects.get(username="expert")
    entry = LogEntry.objects.get()
    return {
        "counts": {
            model._meta.label: model._base_manager.count()
            for model in apps.get_models(include_auto_created=True)
            if model is not Session
        },
        "sessions": Session.objects.count(),
        "label": {
            "version": label.version,
            "recognizable": label.recognizable,
            "confidence": label.confidence,
            "notes": label.notes,
            "phenomena": label.phenomena,
            "created_at": label.created_at.isoformat(),
            "updated_at": label.updated_at.isoformat(),
        },
        "history": [
            [change.version, change.user.username if change.user else None, change.before, change.after]
            for change in history
        ],
        "consensus": list(UnitConsensus.objects.values_list("version", "concept__code", "description")),
        "fractures": list(FractureDescriptor.objects.values_list("version", "displacement", "sentence")),
        "dataset_content_type_id": dataset_type.pk,
        "expert_permissions": sorted(expert.get_all_permissions()),
        "admin_log": [entry.content_type.app_label, entry.content_type.model, entry.object_id],
        "files": _file_checksums(),
    }


def use(facts: dict[str, Any]) -> dict[str, Any]:
    """New rows in every kind of table a label save touches, and a media read through the app's own view."""
    from annotator.services.annotations import unit_annotation_save
    from tests.factories import UserFactory

    expert = User.objects.get(username="expert")
    newcomer = UserFactory(username="newcomer", groups=["expert"])
    fresh = unit_annotation_save(
        unit=Unit.objects.get(pk=facts["other_unit"]), expert=newcomer, version=0, recognizable="yes"
    )
    again = unit_annotation_save(
        unit=Unit.objects.get(pk=facts["unit"]), expert=expert, version=3, recognizable="no", notes="on second thoughts"
    )
    image = Image.objects.order_by("pk").first()
    assert image is not None
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    response = client.get(f"/media/{image.file.name}")
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    return {
        "new_label": fresh.pk,
        "new_label_largest": fresh.pk == UnitAnnotation.objects.order_by("-pk").values_list("pk", flat=True)[0],
        "version": again.version,
        "history_versions": list(
            AnnotationChange.objects.filter(target="unit_annotation", target_id=again.pk)
            .order_by("version")
            .values_list("version", flat=True)
        ),
        "media_status": response.status_code,
        "media_name": image.file.name,
        "media_sha256": hashlib.sha256(body).hexdigest(),
    }


if __name__ == "__main__":
    step, argument = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    if step == "build":
        result = build(Path(argument))
    elif step == "inspect":
        result = inspect(int(argument))
    else:
        result = use(json.loads(argument))
    print(json.dumps(result))
