"""Input and output shapes of the unit survey API."""

from __future__ import annotations

from rest_framework import serializers

from ..models import AnnotationChange, Association, Concept, TopActivation, Unit, UnitAnnotation, UnitConsensus
from .core import MediaUrlField

__all__ = [
    "AnnotationChangeSerializer",
    "ConceptSerializer",
    "PhenomenonSerializer",
    "TopActivationSerializer",
    "UnitAnnotationSaveSerializer",
    "UnitAnnotationSerializer",
    "UnitConsensusSaveSerializer",
    "UnitConsensusSerializer",
    "UnitSerializer",
]


class UnitSerializer(serializers.ModelSerializer):
    suggested_concept: serializers.SlugRelatedField[Concept] = serializers.SlugRelatedField(
        slug_field="code", read_only=True, allow_null=True
    )
    answer_count = serializers.IntegerField(read_only=True, required=False)
    mine = serializers.BooleanField(read_only=True, required=False)
    mask_sprite_url = MediaUrlField("mask_sprite")
    heat_sprite_url = MediaUrlField("heat_sprite")

    class Meta:
        model = Unit
        fields = [
            "id",
            "model",
            "layer",
            "channel",
            "frequency",
            "influence_sum",
            "selected_for",
            "selection_rank",
            "selections",
            "threshold",
            "max_activation",
            "suggested_concept",
            "suggested_iou",
            "concept_ious",
            "mask_sprite_url",
            "heat_sprite_url",
            "answer_count",
            "mine",
        ]
        read_only_fields = fields


class TopActivationSerializer(serializers.ModelSerializer):
    patch_id = serializers.IntegerField(read_only=True)
    image_id = serializers.IntegerField(read_only=True)
    crop_url = MediaUrlField("patch.crop")
    image_url = MediaUrlField("image.file")
    image_size = serializers.SerializerMethodField()

    class Meta:
        model = TopActivation
        fields = ["rank", "score", "box", "patch_id", "image_id", "crop_url", "image_url", "image_size"]
        read_only_fields = fields

    def get_image_size(self, top: TopActivation) -> list[int]:
        return [top.image.width, top.image.height]


class PhenomenonSerializer(serializers.Serializer):
    description = serializers.CharField(allow_blank=True, required=False, max_length=4000)
    concept = serializers.CharField(allow_blank=True, required=False, help_text="a BI-RADS Concept code")
    association = serializers.ChoiceField(choices=Association.choices, allow_blank=True, required=False)


class UnitAnnotationSerializer(serializers.ModelSerializer):
    expert = serializers.CharField(source="expert.username", read_only=True)
    # Read-only model fields lose allow_blank; declared so the schema admits the '' they hold while unanswered.
    recognizable = serializers.ChoiceField(
        choices=UnitAnnotation.Recognizable.choices, allow_blank=True, read_only=True, help_text="'' while unanswered"
    )
    phenomena = PhenomenonSerializer(many=True, read_only=True)

    class Meta:
        model = UnitAnnotation
        fields = [
            "id",
            "unit",
            "expert",
            "recognizable",
            "phenomena",
            "confidence",
            "notes",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class UnitAnnotationSaveSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=0, help_text="the version you loaded; 0 when you had none")
    recognizable = serializers.ChoiceField(choices=UnitAnnotation.Recognizable.choices, allow_blank=True)
    phenomena = PhenomenonSerializer(many=True, required=False)
    confidence = serializers.IntegerField(min_value=1, max_value=5, allow_null=True, required=False)
    notes = serializers.CharField(allow_blank=True, required=False, max_length=4000)


class UnitConsensusSerializer(serializers.ModelSerializer):
    concept: serializers.SlugRelatedField[Concept] = serializers.SlugRelatedField(
        slug_field="code", read_only=True, allow_null=True
    )
    association = serializers.ChoiceField(
        choices=Association.choices, allow_blank=True, read_only=True, help_text="'' when none was given"
    )
    set_by = serializers.CharField(source="set_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = UnitConsensus
        fields = ["unit", "recognizable", "description", "concept", "association", "set_by", "version", "updated_at"]
        read_only_fields = fields


class UnitConsensusSaveSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=0)
    recognizable = serializers.ChoiceField(choices=UnitAnnotation.Recognizable.choices)
    description = serializers.CharField(allow_blank=True, required=False, max_length=4000)
    concept = serializers.CharField(allow_blank=True, required=False)
    association = serializers.ChoiceField(choices=Association.choices, allow_blank=True, required=False)


class AnnotationChangeSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = AnnotationChange
        fields = ["id", "target", "target_id", "unit", "image", "user", "version", "before", "after", "created_at"]
        read_only_fields = fields


class ConceptSerializer(serializers.Serializer):
    code = serializers.CharField()
    category = serializers.CharField()
    category_label = serializers.CharField()
    term = serializers.CharField()
    association = serializers.CharField()
