"""Input and output shapes of the fracture-labelling API."""

from __future__ import annotations

from rest_framework import serializers

from ..models import AnnotationChange, FractureDescriptor

__all__ = [
    "FractureHistorySerializer",
    "FractureLabelListSerializer",
    "FractureLabelSaveSerializer",
    "FractureLabelSerializer",
    "FractureProgressSerializer",
    "FractureQueueSerializer",
]


class FractureLabelSerializer(serializers.ModelSerializer):
    expert = serializers.CharField(source="expert.username", read_only=True)

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


class FractureLabelSaveSerializer(serializers.Serializer):
    """Booleans must be JSON booleans and choices exact strings; the service checks that a fracture has
    a displacement and a location and clears them for a no-fracture label."""

    version = serializers.IntegerField(min_value=0, help_text="the version you loaded; 0 when you had no label yet")
    fracture = serializers.BooleanField()
    displacement = serializers.ChoiceField(
        choices=FractureDescriptor.Displacement.choices, required=False, allow_blank=True, default=""
    )
    comminuted = serializers.BooleanField(required=False, default=False)
    impacted = serializers.BooleanField(required=False, default=False)
    location = serializers.ChoiceField(
        choices=FractureDescriptor.Location.choices, required=False, allow_blank=True, default=""
    )
    avulsed_fragment = serializers.BooleanField(required=False, default=False)


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
    user = serializers.CharField(source="user.username", read_only=True, default=None)

    class Meta:
        model = AnnotationChange
        fields = ["id", "target_id", "image", "user", "version", "before", "after", "created_at"]
        read_only_fields = fields
