"""DeepMiner Studio's data model. Rows only: logic lives in services/ (writes) and selectors/ (reads)."""

from __future__ import annotations

from typing import Any, ClassVar

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
    annotation_blind = models.BooleanField(
        default=True, help_text="experts see only their own answers; admins always see everyone's"
    )
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
    display = models.FileField(
        upload_to="display/", blank=True, help_text="8-bit windowed rendition for pages, made when first needed"
    )
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
    crop = models.FileField(upload_to="patches/", blank=True, help_text="8-bit PNG, written when a unit keeps it")

    class Meta:
        ordering = ["image", "y0", "x0"]
        indexes = [models.Index(fields=["image", "label"])]


class Job(models.Model):
    class Kind(models.TextChoices):
        EXTRACT_PATCHES = "extract_patches", "Patch extraction"
        TRAIN = "train", "Training"
        MINE = "mine", "Unit mining"
        EXPLAIN = "explain", "Batch explanation"
        CAPTION = "caption", "Sentence generator training"
        IMPORT = "import_dataset", "Dataset import"
        READER_STUDY = "reader_study", "Reader study creation"

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
    device = models.CharField(max_length=32, blank=True, help_text="where the worker computed: cpu, cuda:0, ...")
    log = models.TextField(blank=True, help_text="the last lines the job logged, newest last")
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


class TrainedModel(models.Model):
    """A network trained by a `train` job: its checkpoint, training curves and evaluation report."""

    job = models.OneToOneField(Job, related_name="trained_model", on_delete=models.CASCADE)
    dataset = models.ForeignKey(Dataset, related_name="trained_models", on_delete=models.CASCADE)
    name = models.CharField(max_length=200)
    architecture = models.CharField(max_length=32)
    classes = models.JSONField(default=list)
    initialisation = models.CharField(max_length=300, help_text="random, or the weights file it started from")
    checkpoint = models.FileField(upload_to="checkpoints/")
    patch_params = models.JSONField(default=dict)
    config = models.JSONField(default=dict, help_text="training hyper-parameters")
    history = models.JSONField(default=list, help_text="per epoch: losses, validation AUC, lr, seconds")
    best_epoch = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, help_text="evaluation report on the test split")
    mining = models.JSONField(default=dict, blank=True, help_text="summary of the last mining run")
    explanations = models.JSONField(
        default=dict, blank=True, help_text="split -> summary of its last batch explanation (AUC, evaluation)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Unit(models.Model):
    """One channel of the network's last convolutional block, with what mining found about it."""

    model = models.ForeignKey(TrainedModel, related_name="units", on_delete=models.CASCADE)
    layer = models.CharField(max_length=64)
    channel = models.PositiveIntegerField()
    frequency = models.JSONField(default=dict, help_text="class -> images whose top 8 toward the class hold it")
    influence_sum = models.JSONField(default=dict, help_text="class -> summed influence when in the top 8")
    # A unit may be in several classes' lists (as in the reference code): `selections` holds them all,
    # `selected_for` / `selection_rank` the one it ranks best in (ties: the earlier class), for list order.
    selected_for = models.CharField(max_length=32, blank=True, help_text="class it was selected for, if any")
    selection_rank = models.PositiveIntegerField(null=True, blank=True)
    selections = models.JSONField(default=dict, blank=True, help_text="class -> rank, every list it is in")
    threshold = models.FloatField(default=0.0, help_text="top-0.5% activation quantile used to binarise")
    max_activation = models.FloatField(default=0.0)
    suggested_concept = models.ForeignKey(Concept, null=True, blank=True, on_delete=models.SET_NULL)
    # Both IoUs are Network Dissection's, summed over every patch of the mined splits.
    suggested_iou = models.FloatField(default=0.0)
    concept_ious = models.JSONField(default=dict, blank=True, help_text="best few concept codes -> IoU")
    mask_sprite = models.FileField(
        upload_to="masks/", blank=True, help_text="binarised masks of the top patches, one tile per rank"
    )
    heat_sprite = models.FileField(
        upload_to="masks/", blank=True, help_text="the unit's response on its top patches (8-bit, 255 = unit max)"
    )

    class Meta:
        ordering = ["model", "layer", "channel"]
        constraints = [models.UniqueConstraint(fields=["model", "layer", "channel"], name="unit_unique_channel")]
        indexes = [models.Index(fields=["model", "selected_for"])]

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}"


class TopActivation(models.Model):
    """One of a unit's top-activating patches."""

    unit = models.ForeignKey(Unit, related_name="top_activations", on_delete=models.CASCADE)
    rank = models.PositiveIntegerField()
    score = models.FloatField(help_text="the unit's max activation on the patch")
    patch = models.ForeignKey(Patch, related_name="top_activations", on_delete=models.CASCADE)
    image = models.ForeignKey(Image, related_name="top_activations", on_delete=models.CASCADE)
    box = models.JSONField(default=list, help_text="receptive box [x0, y0, x1, y1] in image coordinates")

    class Meta:
        ordering = ["unit", "rank"]
        constraints = [models.UniqueConstraint(fields=["unit", "rank"], name="top_activation_unique_rank")]


class VersionedLabel(models.Model):
    """One expert's label of one thing, saved with optimistic concurrency (`services.versioned.save_versioned`).

    `version` grows by one on every save: a save that names an older version is refused, so two tabs or two
    people never silently overwrite each other. `SNAPSHOT_FIELDS` are the answers the history, the 409 body
    and the API keep as plain JSON.
    """

    SNAPSHOT_FIELDS: ClassVar[tuple[str, ...]] = ()

    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SNAPSHOT_FIELDS}


class Association(models.TextChoices):
    """What a phenomenon in an expert's answer, or a unit's consensus, is associated with.

    Here and in the label choices below, a member without a label gets Django's default: its name in title
    case ("UNSURE" -> "Unsure").
    """

    NORMAL = "normal"
    BENIGN = "benign"
    MALIGNANT = "malignant"
    UNCERTAIN = "uncertain"


class UnitAnnotation(VersionedLabel):
    """One expert's survey answers for one unit (DeepMiner survey, section 2.2 of the paper).

    `phenomena` is a list of {"description", "concept" (a Concept code or ""), "association" (an
    `Association` or "")}; the service validates it against the lexicon.
    """

    SNAPSHOT_FIELDS = ("recognizable", "phenomena", "confidence", "notes")

    class Recognizable(models.TextChoices):
        YES = "yes"
        NO = "no"
        UNSURE = "unsure"

    unit = models.ForeignKey(Unit, related_name="annotations", on_delete=models.CASCADE)
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="unit_annotations", on_delete=models.CASCADE)
    recognizable = models.CharField(max_length=8, choices=Recognizable.choices, blank=True)
    phenomena = models.JSONField(default=list, blank=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 (guess) to 5 (certain)")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["unit", "expert"]
        constraints = [models.UniqueConstraint(fields=["unit", "expert"], name="unit_annotation_one_per_expert")]

    def __str__(self) -> str:
        return f"{self.expert} on unit {self.unit_id}: {self.recognizable or '-'}"


class UnitConsensus(VersionedLabel):
    """The label an admin settles on for a unit after reading every expert's answers."""

    SNAPSHOT_FIELDS = ("recognizable", "description", "concept", "association")

    unit = models.OneToOneField(Unit, related_name="consensus", on_delete=models.CASCADE)
    recognizable = models.CharField(max_length=8, choices=UnitAnnotation.Recognizable.choices)
    description = models.TextField(blank=True)
    concept = models.ForeignKey(Concept, null=True, blank=True, on_delete=models.PROTECT)
    association = models.CharField(max_length=16, choices=Association.choices, blank=True)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return f"consensus on unit {self.unit_id}"

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "concept": self.concept.code if self.concept else ""}


class FractureDescriptor(VersionedLabel):
    """One expert's hip-fracture descriptors for one image (the hip-fracture paper's label set)."""

    SNAPSHOT_FIELDS = ("fracture", "displacement", "comminuted", "impacted", "location", "avulsed_fragment", "sentence")

    class Displacement(models.TextChoices):
        UNDISPLACED = "undisplaced", "Undisplaced"
        MILD = "mildly displaced", "Mildly displaced"
        MODERATE = "moderately displaced", "Moderately displaced"
        SEVERE = "severely displaced", "Severely displaced"

    class Location(models.TextChoices):
        SUBCAPITAL = "subcapital"
        TRANSCERVICAL = "transcervical"
        BASICERVICAL = "basicervical"
        INTERTROCHANTERIC = "intertrochanteric"
        SUBTROCHANTERIC = "subtrochanteric"

    image = models.ForeignKey(Image, related_name="fracture_descriptors", on_delete=models.CASCADE)
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="fracture_descriptors", on_delete=models.CASCADE)
    fracture = models.BooleanField()
    displacement = models.CharField(max_length=24, choices=Displacement.choices, blank=True)
    comminuted = models.BooleanField(default=False)
    impacted = models.BooleanField(default=False)
    location = models.CharField(max_length=24, choices=Location.choices, blank=True)
    avulsed_fragment = models.BooleanField(default=False)
    sentence = models.CharField(max_length=300, blank=True, help_text="the template sentence these labels give")

    class Meta:
        ordering = ["image", "expert"]
        constraints = [models.UniqueConstraint(fields=["image", "expert"], name="fracture_descriptor_one_per_expert")]

    def __str__(self) -> str:
        return f"{self.expert} on image {self.image_id}: {self.sentence}"


class AnnotationChange(models.Model):
    """Every change to an annotation, consensus or fracture label: who, when, the values before and after."""

    class Target(models.TextChoices):
        UNIT_ANNOTATION = "unit_annotation", "Unit annotation"
        UNIT_CONSENSUS = "unit_consensus", "Unit consensus"
        FRACTURE_DESCRIPTOR = "fracture_descriptor", "Fracture descriptors"

    target = models.CharField(max_length=24, choices=Target.choices)
    target_id = models.PositiveIntegerField()
    unit = models.ForeignKey(Unit, null=True, blank=True, related_name="changes", on_delete=models.CASCADE)
    image = models.ForeignKey(Image, null=True, blank=True, related_name="changes", on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    version = models.PositiveIntegerField(help_text="the version this change created")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target", "target_id"])]


class UploadedImage(models.Model):
    """An image uploaded to be explained: it belongs to no dataset and only its uploader and admins see it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="uploads", on_delete=models.CASCADE)
    file = models.FileField(upload_to="uploads/", help_text="lossless PNG, grayscale, 8 or 16 bit, as imported")
    display = models.FileField(upload_to="display/", blank=True, help_text="8-bit windowed rendition")
    original_name = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField(default=8)
    modality = models.CharField(max_length=16, blank=True)
    voi = models.JSONField(
        null=True, blank=True, help_text="the DICOM's own VOI as a curve over pixel values (mining.imaging.voi_curve)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"upload #{self.pk} ({self.original_name})"


class Explanation(models.Model):
    """One image explained by one model with one class-map method (DeepMiner section 2.3).

    Made on demand by the image page (and cached here) or by a batch job. ``units`` holds the most
    influential units toward the decided class, most influential first, with the names they had when it
    was made: ``{"unit": Unit pk or null, "channel", "influence", "max_activation", "label", "source",
    "map": media name of its activation overlay}``. Maps are RGBA heat PNGs at ``map_size``.
    """

    class Method(models.TextChoices):
        CAM = "cam", "CAM"
        GRADCAM = "gradcam", "Grad-CAM"
        SMOOTHGRAD = "smoothgrad", "SmoothGrad"

    model = models.ForeignKey(TrainedModel, related_name="explanations_made", on_delete=models.CASCADE)
    image = models.ForeignKey(Image, null=True, blank=True, related_name="explanations", on_delete=models.CASCADE)
    upload = models.ForeignKey(
        UploadedImage, null=True, blank=True, related_name="explanations", on_delete=models.CASCADE
    )
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.CAM)
    job = models.ForeignKey(Job, null=True, blank=True, related_name="explanations", on_delete=models.SET_NULL)
    decided = models.CharField(max_length=32)
    scores = models.JSONField(default=dict, help_text="class -> image-level probability")
    units = models.JSONField(default=list)
    text = models.TextField()
    class_map = models.FileField(upload_to="explanations/", help_text="the decided class's map, RGBA heat PNG")
    map_size = models.JSONField(default=list, help_text="[height, width] of the map files")
    evaluation = models.JSONField(default=dict, blank=True, help_text="scores against the image's description")
    seconds = models.FloatField(default=0.0, help_text="time to compute")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(image__isnull=False, upload__isnull=True)
                | models.Q(image__isnull=True, upload__isnull=False),
                name="explanation_of_an_image_or_an_upload",
            ),
            models.UniqueConstraint(
                fields=["model", "image", "method"],
                condition=models.Q(image__isnull=False),
                name="explanation_unique_per_image",
            ),
            models.UniqueConstraint(
                fields=["model", "upload", "method"],
                condition=models.Q(upload__isnull=False),
                name="explanation_unique_per_upload",
            ),
        ]

    def __str__(self) -> str:
        return f"explanation #{self.pk} ({self.method}, {self.decided})"


class SentenceModel(models.Model):
    """A sentence generator (the hip-fracture paper's captioner) trained by a `caption` job on the frozen
    final activation map of a whole-image classifier, with its vocabulary, curves and text metrics."""

    job = models.OneToOneField(Job, related_name="sentence_model", on_delete=models.CASCADE)
    classifier = models.ForeignKey(TrainedModel, related_name="sentence_models", on_delete=models.CASCADE)
    dataset = models.ForeignKey(Dataset, related_name="sentence_models", on_delete=models.CASCADE)
    checkpoint = models.FileField(upload_to="checkpoints/")
    source = models.CharField(
        max_length=16, help_text="where its training sentences came from: labels, import or report"
    )
    vocabulary = models.JSONField(default=list)
    config = models.JSONField(default=dict)
    history = models.JSONField(default=list, help_text="per epoch: train / validation loss, seconds")
    best_epoch = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, help_text="BLEU-1..4 and content correctness on the test split")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"sentence generator #{self.pk} on {self.classifier}"


class ReaderStudy(models.Model):
    """A blinded reader study (the hip-fracture paper's section 3.3, the chest X-ray paper's blind scoring):
    experts rate explanations of a set of images, each (image, arm) once, without being told their source.

    ``arms`` lists the ``Arm`` values chosen; ``selection`` says how the images were chosen (a split, a
    seeded sample of one, or a list) and ``skipped`` which images an arm left out and why (an image with
    no expert-written sentence has no comparison item)."""

    class Arm(models.TextChoices):
        SALIENCY = "saliency", "Saliency map alone"
        SENTENCE = "sentence", "Generated sentence alone"
        BOTH = "both", "Saliency map and sentence"
        COMPARISON = "comparison", "Generated vs expert-written sentence"

    name = models.CharField(max_length=200, unique=True)
    dataset = models.ForeignKey(Dataset, related_name="reader_studies", on_delete=models.CASCADE)
    classifier = models.ForeignKey(TrainedModel, related_name="reader_studies", on_delete=models.CASCADE)
    sentence_model = models.ForeignKey(
        SentenceModel, null=True, blank=True, related_name="reader_studies", on_delete=models.CASCADE
    )
    arms = models.JSONField(default=list)
    selection = models.JSONField(default=dict)
    skipped = models.JSONField(default=dict, blank=True, help_text="arm -> image ids left out, with the reason")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class StudyItem(models.Model):
    """One (image, arm) of a study as its readers see it: ``key`` is the only id a reader is given,
    ``content`` what is shown (a picture's media name, one or two sentences) and ``sources`` what only
    the results know: who produced each shown sentence, in the order shown."""

    study = models.ForeignKey(ReaderStudy, related_name="items", on_delete=models.CASCADE)
    key = models.CharField(max_length=32, unique=True)
    image = models.ForeignKey(Image, related_name="study_items", on_delete=models.CASCADE)
    arm = models.CharField(max_length=16, choices=ReaderStudy.Arm.choices)
    content = models.JSONField(default=dict)
    sources = models.JSONField(default=list)

    class Meta:
        ordering = ["study", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "image", "arm"], name="study_item_unique_arm")]

    def __str__(self) -> str:
        return f"{self.arm} of image {self.image_id} in study {self.study_id}"


class StudyAssignment(models.Model):
    """A reader of a study; ``seed`` shuffles the study's items into this reader's own order."""

    study = models.ForeignKey(ReaderStudy, related_name="assignments", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="study_assignments", on_delete=models.CASCADE)
    seed = models.PositiveIntegerField()

    class Meta:
        ordering = ["study", "reader"]
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="study_assignment_one_per_reader")]


class StudyRating(models.Model):
    """One reader's score of one item; a comparison item has a score per shown sentence (left, right)."""

    item = models.ForeignKey(StudyItem, related_name="ratings", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="study_ratings", on_delete=models.CASCADE)
    score = models.PositiveSmallIntegerField()
    second_score = models.PositiveSmallIntegerField(null=True, blank=True, help_text="the right-hand sentence's")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "reader"]
        constraints = [models.UniqueConstraint(fields=["item", "reader"], name="study_rating_one_per_reader")]
