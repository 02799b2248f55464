"""Input and output shapes of the core API: datasets, images (with findings), jobs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Concept, Dataset, Finding, Image, Job
from ..permissions import patch_counts_seen, user_is_admin, user_sees_truth
from ..selectors.jobs import job_error_seen
from ..services.training_checkpoints import training_resumable

__all__ = [
    "DatasetSerializer",
    "FindingSerializer",
    "ImageSerializer",
    "JobCreateSerializer",
    "JobSerializer",
    "MediaUrlField",
    "media_url",
]


def media_url(field: Any) -> str:
    """The signed-in-only URL of a stored file, "" when the field is empty."""
    return reverse("media", args=[field.name]) if field else ""


@extend_schema_field(OpenApiTypes.STR)
class MediaUrlField(serializers.Field):
    """Read-only: the ``media_url`` of the file field ``source`` names (a dotted path is followed)."""

    def __init__(self, source: str) -> None:
        super().__init__(source=source, read_only=True)

    def to_representation(self, value: Any) -> str:
        return media_url(value)


class FindingSerializer(serializers.ModelSerializer):
    concepts: serializers.SlugRelatedField[Concept] = serializers.SlugRelatedField(
        slug_field="code", many=True, read_only=True
    )
    mask_url = MediaUrlField("mask")

    class Meta:
        model = Finding
        fields = ["id", "pathology", "lesion_type", "concepts", "description", "area", "bbox", "mask_url"]


HIDDEN_TRUTH = "for a user who may not see the ground truth (experts, on a blind dataset and on hip radiographs)"


class ImageSerializer(serializers.ModelSerializer):
    """An image; its ground truth (label, metadata, findings) comes back empty for a user who may not see
    it on the image's dataset (permissions' truth rule, asked of the context's request user; hidden when the
    context has no request)."""

    findings = FindingSerializer(many=True, read_only=True, help_text=f"[] {HIDDEN_TRUTH}")
    file_url = MediaUrlField("file")
    thumbnail_url = MediaUrlField("thumbnail")

    class Meta:
        model = Image
        fields = [
            "id",
            "dataset",
            "source_name",
            "width",
            "height",
            "bit_depth",
            "modality",
            "view",
            "laterality",
            "patient_id",
            "split",
            "label",
            "metadata",
            "file_url",
            "thumbnail_url",
            "findings",
        ]
        extra_kwargs = {
            "label": {"help_text": f"the image-level class; '' {HIDDEN_TRUTH}"},
            "metadata": {
                "help_text": f"the manifest's other columns (reports, known descriptors); {{}} {HIDDEN_TRUTH}"
            },
        }

    def to_representation(self, instance: Image) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or not user_sees_truth(request.user, instance.dataset):
            data.update(label="", metadata={}, findings=[])
        return data


class DatasetSerializer(serializers.ModelSerializer):
    image_count = serializers.IntegerField(read_only=True)
    patient_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "source",
            "classes",
            "created_at",
            "image_count",
            "patient_count",
        ]


class JobSerializer(serializers.ModelSerializer):
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True, default=None, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    error = serializers.SerializerMethodField(
        help_text="a failed job's error: with its traceback for admins, its first line for everyone else"
    )
    resumable = serializers.SerializerMethodField(
        help_text="a failed or cancelled training job with a checkpointed epoch: POST resume/ goes on from it"
    )

    @extend_schema_field(OpenApiTypes.STR)
    def get_error(self, job: Job) -> str:
        asking = self.context.get("request")  # no request: the first line only
        return job_error_seen(asking.user if asking is not None else AnonymousUser(), job)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_resumable(self, job: Job) -> bool:
        return training_resumable(job)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "kind_label",
            "status",
            "dataset",
            "dataset_name",
            "progress",
            "message",
            "params",
            "result",
            "error",
            "cancel_requested",
            "celery_id",
            "worker",
            "device",
            "log",
            "resumable",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Job) -> dict[str, Any]:
        """A patch extraction's patches per split and label are its dataset's truth (a patch's label is its
        finding's pathology): per split only, under "all", for a user who may not see it (hidden when the
        context has no request), as on the dataset page. A failed import's bad rows go to admins only."""
        data: dict[str, Any] = super().to_representation(instance)
        result = data.get("result")
        request = self.context.get("request")
        user = request.user if request is not None else AnonymousUser()  # no request: hidden
        if isinstance(result, dict) and isinstance(result.get("by_split"), dict) and instance.dataset is not None:
            data["result"] = {**result, "by_split": patch_counts_seen(user, instance.dataset, result["by_split"])}
        if isinstance(result, dict) and "errors" in result and not user_is_admin(user):
            # A failed import's bad rows quote its manifest (labels, findings): for the admins who import.
            data["result"] = {key: value for key, value in result.items() if key != "errors"}
        return data


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(), required=False, allow_null=True)
    params = serializers.DictField(required=False, default=dict)
