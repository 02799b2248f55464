"""factory_boy factories for the data model, and signed-in test clients; tests build exactly the rows they need."""

from __future__ import annotations

from typing import Any

import factory
import numpy as np
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from annotator.files import unique_name, write_png_atomic
from annotator.models import (
    Concept,
    Dataset,
    Finding,
    Image,
    Job,
    Patch,
    TopActivation,
    TrainedModel,
    Unit,
    UnitAnnotation,
)

PASSWORD = "correct-horse-battery"


def client_for(user: User | None) -> APIClient:
    """A client signed in as ``user`` through the session, as a browser is; anonymous for None.
    It speaks to pages and to the API alike (``format="json"`` or a JSON string body)."""
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def groups(self, create: bool, names: list[str] | None, **kwargs: Any) -> None:
        if create and names:
            self.groups.add(*[Group.objects.get_or_create(name=name)[0] for name in names])
        self.save()


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    classes = factory.LazyFunction(lambda: ["normal", "benign", "malignant"])
    source = "test"


def _png(array: np.ndarray, stem: str, folder: str = "images") -> str:
    return write_png_atomic(unique_name(folder, stem, ".png"), array)


class ImageFactory(factory.django.DjangoModelFactory):
    """An image with real pixels on disk (a uniform bright rectangle unless `pixels` is given)."""

    class Meta:
        model = Image
        exclude = ("pixels",)

    dataset = factory.SubFactory(DatasetFactory)
    pixels = factory.LazyFunction(lambda: np.full((64, 48), 200, dtype=np.uint8))
    file = factory.LazyAttribute(lambda o: _png(o.pixels, "img"))
    source_name = factory.Sequence(lambda n: f"img-{n}.png")
    sha256 = "0" * 64
    width = factory.LazyAttribute(lambda o: o.pixels.shape[1])
    height = factory.LazyAttribute(lambda o: o.pixels.shape[0])
    patient_id = factory.Sequence(lambda n: f"P{n:04d}")
    split = "train"
    label = "normal"


class FindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Finding
        exclude = ("mask_array",)

    image = factory.SubFactory(ImageFactory)
    pathology = "malignant"
    lesion_type = "mass"
    mask_array = factory.LazyAttribute(lambda o: np.zeros((o.image.height, o.image.width), dtype=bool))
    mask = factory.LazyAttribute(lambda o: _png(o.mask_array, "mask", "masks"))
    area = factory.LazyAttribute(lambda o: int(o.mask_array.sum()))


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = Job.Kind.EXTRACT_PATCHES
    dataset = factory.SubFactory(DatasetFactory)


def evaluation_report(seed: int = 0, n: int = 90) -> dict:
    """A real evaluation report (mining.metrics.evaluate) on random but informative predictions."""
    from mining.metrics import evaluate

    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 3
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metadata = [{"view": "CC" if i % 2 else "MLO", "age": 40 + i % 30} for i in range(n)]
    return evaluate(truth, probs, ("normal", "benign", "malignant"), metadata=metadata, n_boot=50)


class TrainedModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainedModel

    job = factory.SubFactory(JobFactory, kind=Job.Kind.TRAIN, status=Job.Status.SUCCEEDED)
    dataset = factory.SelfAttribute("job.dataset")
    name = factory.LazyAttribute(lambda o: f"resnet18 on {o.dataset.name}")
    architecture = "resnet18"
    classes = factory.LazyFunction(lambda: ["normal", "benign", "malignant"])
    initialisation = "random"
    checkpoint = "checkpoints/missing.pt"
    patch_params = factory.LazyFunction(lambda: {"input_size": 128, "side_fraction": 0.25})
    history = factory.LazyFunction(
        lambda: [
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "val_loss": 1.1 / e,
                "lr": 0.001,
                "val_auc": {"normal": 0.7 + e / 50, "benign": 0.65 + e / 40, "malignant": 0.8 + e / 30},
                "seconds": 10.0,
            }
            for e in range(1, 4)
        ]
    )
    best_epoch = 3
    metrics = factory.LazyFunction(evaluation_report)


class UnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Unit

    model = factory.SubFactory(TrainedModelFactory)
    layer = "layer4"
    channel = factory.Sequence(lambda n: n)
    frequency = factory.LazyFunction(lambda: {"normal": 1, "benign": 2, "malignant": 30})
    selected_for = ""
    selection_rank = None
    # As mining stores them: a selected unit's own class is among its lists.
    selections = factory.LazyAttribute(
        lambda unit: {unit.selected_for: unit.selection_rank} if unit.selected_for else {}
    )


class UnitAnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UnitAnnotation

    unit = factory.SubFactory(UnitFactory)
    expert = factory.SubFactory(UserFactory, groups=["expert"])
    recognizable = "yes"
    phenomena = factory.LazyFunction(
        lambda: [{"description": "spiculated edge", "concept": "mass_margin.spiculated", "association": "malignant"}]
    )


def mined_unit(
    *,
    model: TrainedModel | None = None,
    n_top: int = 64,
    n_images: int = 6,
    seed: int = 0,
    selected_for: str = "malignant",
    selection_rank: int = 1,
    suggested: str = "mass_margin.spiculated",
) -> Unit:
    """A unit as mining leaves it: `n_top` top patches cut from real phantom images, crops on disk, a binary
    mask sprite and a heat sprite whose tiles are discs around each patch's strongest point."""
    from mining.phantoms import generate_mammogram_phantoms
    from mining.pipeline import mask_sprite

    rng = np.random.default_rng(seed)
    if model is None:
        model = TrainedModelFactory()
    phantoms = list(generate_mammogram_phantoms(n_images, seed=seed))
    images = [
        ImageFactory(
            dataset=model.dataset, pixels=p.pixels, label=p.label, view=p.view, laterality=p.laterality, split="test"
        )
        for p in phantoms
    ]
    unit = UnitFactory(
        model=model,
        selected_for=selected_for,
        selection_rank=selection_rank,
        threshold=2.5,
        max_activation=9.0,
        suggested_concept=Concept.objects.filter(code=suggested).first(),
        suggested_iou=0.21,
    )
    side, mask_side = 128, 64
    yy, xx = np.mgrid[0:mask_side, 0:mask_side]
    masks, heats, rows = [], [], []
    for rank in range(1, n_top + 1):
        image, pixels = images[(rank - 1) % n_images], phantoms[(rank - 1) % n_images].pixels
        x0 = int(rng.integers(0, image.width - side))
        y0 = int(rng.integers(0, image.height - side))
        crop = pixels[y0 : y0 + side, x0 : x0 + side]
        patch = Patch.objects.create(
            image=image,
            x0=x0,
            y0=y0,
            x1=x0 + side,
            y1=y0 + side,
            label="malignant",
            tissue_fraction=1.0,
            crop=_png(crop, "patch", "patches"),
        )
        cx, cy = rng.integers(12, mask_side - 12, size=2)
        distance = np.hypot(xx - cx, yy - cy)
        heats.append(np.clip(255 * np.exp(-((distance / 14) ** 2)), 0, 255).astype(np.uint8))
        masks.append(distance < 10)
        rows.append(
            TopActivation(
                unit=unit,
                rank=rank,
                score=9.0 - rank * 0.1,
                patch=patch,
                image=image,
                box=[x0, y0, x0 + side, y0 + side],
            )
        )
    TopActivation.objects.bulk_create(rows)
    unit.mask_sprite = _png(mask_sprite(np.stack(masks)), f"model{model.pk}-unit{unit.pk}", "masks")
    unit.heat_sprite = _png(mask_sprite(np.stack(heats)), f"model{model.pk}-unit{unit.pk}-heat", "masks")
    unit.save(update_fields=["mask_sprite", "heat_sprite"])
    return unit


def random_model(
    *,
    dataset: Dataset,
    patch_params: dict[str, Any] | None = None,
    seed: int = 0,
    metrics: dict[str, Any] | None = None,
) -> TrainedModel:
    """A model of ``dataset`` (its classes) with a real checkpoint of a seeded, randomly initialised
    ResNet-18 on disk: for what needs weights, not skill (explaining, mining, captioning, cancelling)."""
    import torch

    from annotator.files import media_path
    from mining.networks import build_network, checkpoint_save

    torch.manual_seed(seed)
    classes = list(dataset.classes)
    network = build_network("resnet18", len(classes))
    patch_params = patch_params or {"input_size": 64}
    name = unique_name("checkpoints", f"random-resnet18-{seed}", ".pt")
    media_path(name).parent.mkdir(parents=True, exist_ok=True)
    checkpoint_save(
        media_path(name),
        model=network.model,
        architecture="resnet18",
        classes=classes,
        patch_params=patch_params,
        epoch=1,
        metrics={},
        history=[],
        config={},
    )
    extra = {} if metrics is None else {"metrics": metrics}
    return TrainedModelFactory(
        dataset=dataset, job__dataset=dataset, checkpoint=name, classes=classes, patch_params=patch_params, **extra
    )
