"""Input and output shapes of the fracture-labelling API."""

from __future__ import annotations

from rest_framework import serializers

from ..models import AnnotationChange, FractureDescriptor

__all__ = [
    "FractureExportRowSerializer",
    "FractureHistorySerializer",
    "FractureLabelListSerializer",
    "FractureLabelSaveSerializer",
    "FractureLabelSerializer",
    "FractureProgressSerializer",
    "FractureQueueSerializer",
]


class FractureLabelSerializer(serializers.ModelSerializer):
    expert = serializers.CharField(source="expert.username", read_only=True)
    # Read-only model fields lose allow_blank; declared so the schema admits a no-fracture label's ''.
    displacement = serializers.ChoiceField(
        choices=FractureDescriptor.Displacement.choices,
        allow_blank=True,
        read_only=True,
        help_text="'' for no fracture",
    )
    location = serializers.ChoiceField(
        choices=FractureDescriptor.Location.choices, allow_blank=True, read_only=True, help_text="'' for no fracture"
    )

    class Meta:
        model = FractureDescriptor
        fields = [
            "id",
            "image",
            "expert",
            "fracture",
            "displacement",
            "comminuted",
            "impacted",
            "location",
            "avulsed_fragment",
            "sentence",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FractureLabelListSerializer(serializers.Serializer):
    image = serializers.IntegerField()
    dataset = serializers.IntegerField()
    blind = serializers.BooleanField(help_text="true when only your own label is shown")
    mine = FractureLabelSerializer(allow_null=True)
    labels = FractureLabelSerializer(many=True)


class JSONBooleanField(serializers.BooleanField):
    """true or false as JSON writes them; DRF's BooleanField also takes "yes", "on", 1 and "1"."""

    def to_internal_value(self, data: object) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        raise AssertionError("unreachable")  # fail() raises


class FractureLabelSaveSerializer(serializers.Serializer):
    """Booleans must be JSON booleans and choices exact strings; the service checks that a fracture has
    a displacement and a location and clears them for a no-fracture label."""

    version = serializers.IntegerField(min_value=0, help_text="the version you loaded; 0 when you had no label yet")
    fracture = JSONBooleanField()
    displacement = serializers.ChoiceField(
        choices=FractureDescriptor.Displacement.choices, required=False, allow_blank=True, default=""
    )
    comminuted = JSONBooleanField(required=False, default=False)
    impacted = JSONBooleanField(required=False, default=False)
    location = serializers.ChoiceField(
        choices=FractureDescriptor.Location.choices, required=False, allow_blank=True, default=""
    )
    avulsed_fragment = JSONBooleanField(required=False, default=False)


class FractureProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="images in the dataset")
    mine = serializers.IntegerField(help_text="images you labelled")
    everyone = serializers.IntegerField(help_text="images labelled by at least one expert")


class FractureQueueSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    next_image = serializers.IntegerField(
        allow_null=True, help_text="the next image you have not labelled; null when done"
    )
    next_url = serializers.CharField(allow_blank=True, help_text="its labelling page")
    progress = FractureProgressSerializer()


class FractureHistorySerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = AnnotationChange
        fields = ["id", "target_id", "image", "user", "version", "before", "after", "created_at"]
        read_only_fields = fields


TRUTH = "the image's known value: admins and researchers only, absent from an expert's export"


def _truth_flag() -> serializers.BooleanField:
    return serializers.BooleanField(required=False, allow_null=True, help_text=TRUTH)


def _truth_text() -> serializers.CharField:
    return serializers.CharField(required=False, allow_null=True, help_text=TRUTH)


class FractureExportRowSerializer(serializers.Serializer):
    """One record of the JSON export (the schema's description of it; selectors build the records)."""

    image_id = serializers.IntegerField()
    source_name = serializers.CharField()
    patient_id = serializers.CharField()
    split = serializers.CharField()
    expert = serializers.CharField()
    fracture = serializers.BooleanField()
    displacement = serializers.ChoiceField(choices=FractureDescriptor.Displacement.choices, allow_blank=True)
    comminuted = serializers.BooleanField()
    impacted = serializers.BooleanField()
    location = serializers.ChoiceField(choices=FractureDescriptor.Location.choices, allow_blank=True)
    avulsed_fragment = serializers.BooleanField()
    sentence = serializers.CharField()
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    truth_fracture = _truth_flag()
    truth_displacement = _truth_text()
    truth_comminuted = _truth_flag()
    truth_impacted = _truth_flag()
    truth_location = _truth_text()
    truth_avulsed_fragment = _truth_flag()
    truth_report = _truth_text()
