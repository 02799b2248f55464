"""DeepMiner Studio's data model. Rows only: logic lives in services.py (writes) and selectors.py (reads)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

PATHOLOGIES = [("normal", "Normal"), ("benign", "Benign"), ("malignant", "Malignant")]


class Dataset(models.Model):
    class Kind(models.TextChoices):
        MAMMOGRAM = "mammogram", "Mammograms (normal / benign / malignant)"
        HIP_FRACTURE = "hip_fracture", "Hip radiographs (fracture descriptors)"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.MAMMOGRAM)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=64, blank=True, help_text="demo, manifest or cbis-ddsm")
    classes = models.JSONField(default=list, help_text="class names in label-index order")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        TEST = "test", "Test"
        HOLDOUT = "holdout", "Hold-out"

    dataset = models.ForeignKey(Dataset, related_name="images", on_delete=models.CASCADE)
    file = models.FileField(upload_to="images/", help_text="lossless PNG, grayscale, 8 or 16 bit")
    thumbnail = models.FileField(upload_to="thumbnails/", blank=True)
    overlay = models.FileField(upload_to="overlays/", blank=True, help_text="finding outlines, RGBA PNG")
    source_name = models.CharField(max_length=500, help_text="path in the imported folder")
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField(default=8)
    modality = models.CharField(max_length=16, default="MG")
    view = models.CharField(max_length=16, blank=True)
    laterality = models.CharField(max_length=1, blank=True)
    patient_id = models.CharField(max_length=128)
    split = models.CharField(max_length=16, choices=Split.choices)
    label = models.CharField(max_length=32, blank=True, help_text="image-level class")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["dataset", "id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "source_name"], name="image_unique_source_per_dataset"),
        ]
        indexes = [models.Index(fields=["dataset", "split"]), models.Index(fields=["dataset", "patient_id"])]

    def __str__(self) -> str:
        return f"{self.dataset.name}/{self.source_name}"


class Concept(models.Model):
    """A term of the BI-RADS lexicon (or normal anatomy) that a unit or a finding can be named with."""

    code = models.CharField(max_length=100, unique=True)
    category = models.CharField(max_length=64)
    category_label = models.CharField(max_length=128)
    term = models.CharField(max_length=128)
    association = models.CharField(max_length=16, help_text="normal / benign / suspicious / neutral")

    class Meta:
        ordering = ["category", "term"]

    def __str__(self) -> str:
        return f"{self.category_label}: {self.term}"


class Finding(models.Model):
    image = models.ForeignKey(Image, related_name="findings", on_delete=models.CASCADE)
    pathology = models.CharField(max_length=16, choices=PATHOLOGIES)
    lesion_type = models.CharField(max_length=32, blank=True, help_text="mass, calcification, anatomy, ...")
    concepts = models.ManyToManyField(Concept, blank=True, related_name="findings")
    description = models.TextField(blank=True)
    mask = models.FileField(upload_to="masks/", help_text="binary PNG, image size")
    area = models.PositiveIntegerField(default=0, help_text="mask pixels")
    bbox = models.JSONField(default=list, help_text="[x0, y0, x1, y1], x1/y1 exclusive")

    class Meta:
        ordering = ["image", "id"]

    def __str__(self) -> str:
        return f"{self.pathology} {self.lesion_type} on image {self.image_id}"


class Patch(models.Model):
    """A training/evaluation patch: a square box on an image and its DeepMiner label."""

    image = models.ForeignKey(Image, related_name="patches", on_delete=models.CASCADE)
    x0 = models.PositiveIntegerField()
    y0 = models.PositiveIntegerField()
    x1 = models.PositiveIntegerField()
    y1 = models.PositiveIntegerField()
    label = models.CharField(max_length=16, choices=PATHOLOGIES)
    tissue_fraction = models.FloatField()

    class Meta:
        ordering = ["image", "y0", "x0"]
        indexes = [models.Index(fields=["image", "label"])]


class Job(models.Model):
    class Kind(models.TextChoices):
        EXTRACT_PATCHES = "extract_patches", "Patch extraction"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, related_name="jobs", on_delete=models.CASCADE)
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    message = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    celery_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="hostname and pid of the worker running it")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
