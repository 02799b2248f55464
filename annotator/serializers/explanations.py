"""Output shapes of the explanation API: an explanation with its maps' URLs and its units' current names."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from ..models import Explanation
from .core import MediaUrlField

__all__ = ["ExplainUploadSerializer", "ExplanationSerializer"]


def _map_url(name: str) -> str:
    return reverse("media", args=[name]) if name else ""


class ExplanationUnitSerializer(serializers.Serializer):
    unit = serializers.IntegerField(allow_null=True, help_text="the Unit's id (its survey page), if mined")
    channel = serializers.IntegerField()
    influence = serializers.FloatField(help_text="max activation x final-layer weight toward the decided class")
    max_activation = serializers.FloatField()
    # "label" and "source" are also Field attributes in the type stubs; as serializer fields they are the keys.
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    source = serializers.ChoiceField(choices=["consensus", "experts", "suggested"], allow_null=True)  # type: ignore[assignment]
    concept = serializers.CharField(allow_blank=True)
    map_url = serializers.CharField(help_text="RGBA heat PNG of its activation over the image")


class ExplanationSerializer(serializers.ModelSerializer):
    """``units`` and ``text`` use the names the units go by now, as the requesting user may see them
    (the view passes them in the context as ``units`` / ``text``)."""

    class_map_url = MediaUrlField("class_map")
    units = serializers.SerializerMethodField()
    text = serializers.SerializerMethodField()
    image = serializers.IntegerField(source="image_id", allow_null=True, read_only=True)
    upload = serializers.IntegerField(source="upload_id", allow_null=True, read_only=True)
    model = serializers.IntegerField(source="model_id", read_only=True)

    class Meta:
        model = Explanation
        fields = [
            "id",
            "model",
            "image",
            "upload",
            "method",
            "decided",
            "scores",
            "text",
            "units",
            "class_map_url",
            "map_size",
            "seconds",
            "created_at",
        ]

    @staticmethod
    def _units(explanation: Explanation, context: dict[str, Any]) -> list[dict[str, Any]]:
        return context.get("units", explanation.units)

    def get_units(self, explanation: Explanation) -> list[dict[str, Any]]:
        units = [{**u, "map_url": _map_url(u.get("map", ""))} for u in self._units(explanation, self.context)]
        return list(ExplanationUnitSerializer(units, many=True).data)

    def get_text(self, explanation: Explanation) -> str:
        return str(self.context.get("text", explanation.text))


class ExplainUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="PNG, JPEG, TIFF or DICOM", allow_empty_file=True)  # the service words it
    model = serializers.IntegerField(required=False, help_text="trained model id; default the newest")
    method = serializers.ChoiceField(choices=Explanation.Method.values, default=Explanation.Method.CAM)
