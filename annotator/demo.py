"""The demo: phantom images written as an ordinary folder + manifest, then imported like any user dataset,
so `make demo` exercises the same import path a real dataset takes."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from mining.phantoms import PhantomImage, generate_hip_phantoms, generate_mammogram_phantoms

from .models import Dataset, Image
from .services.datasets import dataset_import

__all__ = [
    "DEMO_FRACTURE_DATASET",
    "DEMO_MAMMOGRAM_DATASET",
    "demo_dataset_create",
    "demo_fracture_dataset_create",
    "demo_users_ensure",
    "phantoms_write_folder",
]

DEMO_MAMMOGRAM_DATASET = "Demo mammograms (phantoms)"
DEMO_FRACTURE_DATASET = "Demo hip radiographs (phantoms)"
_BASE_COLUMNS = [
    "image",
    "patient_id",
    "label",
    "view",
    "laterality",
    "mask",
    "mask_pathology",
    "mask_concepts",
    "mask_lesion_type",
]


def phantoms_write_folder(images: Iterable[PhantomImage], folder: Path) -> Path:
    """Write each phantom as PNG, each finding mask as PNG, and manifest.csv (one row per finding)."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    extra_columns: list[str] = []
    for index, phantom in enumerate(images):
        stem = f"{phantom.patient_id}_{phantom.laterality}_{phantom.view}_{index:05d}"
        PILImage.fromarray(phantom.pixels).save(folder / f"{stem}.png", compress_level=1)
        base = {
            "image": f"{stem}.png",
            "patient_id": phantom.patient_id,
            "label": phantom.label,
            "view": phantom.view,
            "laterality": phantom.laterality,
            **phantom.metadata,
        }
        extra_columns += [key for key in phantom.metadata if key not in extra_columns]
        if not phantom.findings:
            rows.append(base)
        for number, finding in enumerate(phantom.findings):
            mask_name = f"masks/{stem}_f{number}.png"
            PILImage.fromarray(finding.mask).save(folder / mask_name, compress_level=1)  # 1-bit PNG
            rows.append(
                {
                    **base,
                    "mask": mask_name,
                    "mask_pathology": finding.pathology,
                    "mask_concepts": ";".join(finding.concepts),
                    "mask_lesion_type": finding.lesion_type,
                }
            )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_BASE_COLUMNS + extra_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def demo_dataset_create(
    *, folder: Path, n_images: int, seed: int, name: str = DEMO_MAMMOGRAM_DATASET, replace: bool = False
) -> tuple[Dataset, bool]:
    """The demo mammogram dataset; (dataset, created). An existing one is kept unless `replace`."""
    existing = Dataset.objects.filter(name=name).first()
    if existing and not replace:
        return existing, False
    manifest = phantoms_write_folder(generate_mammogram_phantoms(n_images, seed=seed), folder)
    with transaction.atomic():
        if existing:
            existing.delete()
        dataset = dataset_import(name=name, folder=folder, manifest=manifest, seed=seed)
        dataset.source = "demo"
        dataset.description = (
            f"{n_images} procedurally generated mammogram-like phantoms (seed {seed}) with planted findings "
            "whose BI-RADS concept and mask are known: circumscribed oval masses (benign), spiculated "
            "irregular masses (malignant), fine pleomorphic calcification clusters (malignant), coarse "
            "vascular calcifications (benign); skin line and normal vessels are masked as normal anatomy."
        )
        dataset.save(update_fields=["source", "description"])
    return dataset, True


def demo_fracture_dataset_create(
    *, folder: Path, n_images: int, seed: int, name: str = DEMO_FRACTURE_DATASET, replace: bool = False
) -> tuple[Dataset, bool]:
    """The demo hip-fracture dataset, queued for labelling (nothing pre-labelled); (dataset, created).

    The phantoms go through the same folder + manifest import as any dataset. Their known descriptors
    and report travel as manifest columns into Image.metadata; a CSV cell cannot say "true" as JSON
    does, so the generator's own values (JSON booleans, null, the fracture box as a list) then replace
    the imported text, so that ``FractureDescriptors.from_dict(image.metadata)`` reads the truth as is.
    An existing dataset of that name is kept unless ``replace``.
    """
    existing = Dataset.objects.filter(name=name).first()
    if existing and not replace:
        return existing, False
    phantoms = generate_hip_phantoms(n_images, seed=seed)
    truth = {phantom.patient_id: phantom.metadata for phantom in phantoms}  # one hip per patient
    manifest = phantoms_write_folder(phantoms, folder)
    del phantoms  # the pixels are on disk now
    with transaction.atomic():
        if existing:
            existing.delete()
        dataset = dataset_import(name=name, folder=folder, manifest=manifest, kind="hip_fracture", seed=seed)
        dataset.source = "demo"
        dataset.description = (
            f"{n_images} procedurally generated hip radiograph phantoms (seed {seed}), about 60% fractured, "
            "with known descriptors: displacement, comminution, impaction, location (subcapital to "
            "subtrochanteric) and avulsed fragment, kept in each image's metadata. Imported with no expert "
            "labels: every image starts in the labelling queue."
        )
        dataset.save(update_fields=["source", "description"])
        images = list(dataset.images.only("id", "patient_id", "metadata"))
        for image in images:
            image.metadata = {**image.metadata, **truth[image.patient_id]}
        Image.objects.bulk_update(images, ["metadata"], batch_size=500)
    return dataset, True


def demo_users_ensure(*, credentials_file: Path) -> list[tuple[str, str, str]]:
    """Create (or keep) the demo accounts; returns (role, username, password). Passwords are random
    per checkout and kept in `credentials_file`, never in the code."""
    import secrets

    stored: dict[str, str] = {}
    if credentials_file.exists():
        for line in credentials_file.read_text().splitlines():
            if ":" in line:
                name, password = line.split(":", 1)
                stored[name] = password
    accounts = [("admin", "admin", True), ("expert", "expert", False), ("researcher", "researcher", False)]
    User = get_user_model()
    result = []
    for role, username, is_staff in accounts:
        password = stored.get(username) or secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = is_staff
        user.is_superuser = is_staff
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        stored[username] = password
        result.append((role, username, password))
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = credentials_file.with_suffix(".tmp")
    tmp.write_text("".join(f"{user}:{password}\n" for user, password in stored.items()))
    tmp.chmod(0o600)
    tmp.replace(credentials_file)
    return result
