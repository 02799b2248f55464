"""Input and output shapes of the reader-study API. A reader's item has nothing but what they are shown."""

from __future__ import annotations

from rest_framework import serializers

__all__ = [
    "StudyExportRowSerializer",
    "StudyItemListSerializer",
    "StudyRatingSaveSerializer",
    "StudyRatingSerializer",
    "StudyResultsSerializer",
]


class StudyScaleSerializer(serializers.Serializer):
    top = serializers.IntegerField(help_text="the highest score: 10, or 5 for a pair of sentences")
    scores = serializers.IntegerField(help_text="scores the item takes: 2 for a pair of sentences (left, right)")
    question = serializers.CharField()


class StudyItemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="the item's opaque id")
    picture = serializers.CharField(help_text="URL of the picture shown")
    sentences = serializers.ListField(child=serializers.CharField(allow_blank=True))
    scale = StudyScaleSerializer()
    score = serializers.IntegerField(allow_null=True, help_text="your score; null until you rate it")
    second_score = serializers.IntegerField(allow_null=True, help_text="your score of the right-hand sentence")


class StudyItemListSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    name = serializers.CharField()
    total = serializers.IntegerField()
    rated = serializers.IntegerField(help_text="items you have rated")
    resume = serializers.IntegerField(help_text="index of your first unrated item (total when done)")
    items = StudyItemSerializer(many=True, help_text="in your own order")


class StudyRatingSaveSerializer(serializers.Serializer):
    score = serializers.IntegerField(min_value=1, max_value=10)
    second_score = serializers.IntegerField(
        min_value=1, max_value=10, required=False, allow_null=True, default=None, help_text="a pair's right-hand one"
    )


class StudyRatingSerializer(serializers.Serializer):
    key = serializers.CharField()
    score = serializers.IntegerField()
    second_score = serializers.IntegerField(allow_null=True)
    rated = serializers.IntegerField(help_text="items you have rated now")
    total = serializers.IntegerField()


class _ArmSerializer(serializers.Serializer):
    arm = serializers.CharField()
    title = serializers.CharField()
    n = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    low = serializers.IntegerField(allow_null=True)
    high = serializers.IntegerField(allow_null=True)


class _ReaderSerializer(serializers.Serializer):
    reader = serializers.CharField()
    rated = serializers.IntegerField()
    means = serializers.DictField(child=serializers.FloatField(allow_null=True))


class _PairedSerializer(serializers.Serializer):
    first = serializers.CharField()
    second = serializers.CharField()
    pairs = serializers.IntegerField()
    mean_difference = serializers.FloatField(allow_null=True)
    statistic = serializers.FloatField(allow_null=True, help_text="scipy.stats.wilcoxon's")
    p_value = serializers.FloatField(allow_null=True)
    note = serializers.CharField(allow_blank=True)


class StudyResultsSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    name = serializers.CharField()
    items = serializers.IntegerField()
    arms = _ArmSerializer(many=True)
    readers = _ReaderSerializer(many=True)
    paired = _PairedSerializer(many=True)
    skipped = serializers.DictField(child=serializers.ListField(child=serializers.IntegerField()))


class StudyExportRowSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    reader = serializers.CharField()
    image_id = serializers.IntegerField()
    source_name = serializers.CharField()
    split = serializers.CharField()
    item = serializers.CharField()
    arm = serializers.CharField()
    position = serializers.CharField(allow_blank=True, help_text="left or right for a pair of sentences")
    sentence_source = serializers.CharField(allow_blank=True, help_text="generated or expert for a pair's sentence")
    score = serializers.IntegerField()
    scale = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
