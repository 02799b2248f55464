"""The reader-study API: a reader's items and ratings (blind: see selectors.reader_studies), and the
results and exports for admins and researchers. One class per operation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import ApplicationError
from ..models import ReaderStudy, StudyAssignment
from ..selectors import reader_studies as selectors
from ..serializers.reader_studies import (
    StudyExportRowSerializer,
    StudyItemListSerializer,
    StudyRatingSaveSerializer,
    StudyRatingSerializer,
    StudyResultsSerializer,
)
from ..services.reader_studies import study_rating_save
from ..streaming import stream_export
from .inputs import EXPORT_FORMAT, export_format, signed_in_user, validated_input

__all__ = ["StudyExportApi", "StudyItemListApi", "StudyRatingSaveApi", "StudyResultsApi"]

TAGS = ["reader studies"]
ERROR = inline_serializer("StudyError", {"message": serializers.CharField(), "extra": serializers.DictField()})
NO_STUDY = OpenApiResponse(ERROR, description="no such study")
NOT_A_READER = "You are not a reader of this study."


def reader_assignment(study: ReaderStudy, user: Any) -> StudyAssignment:
    """The user's assignment to ``study``; 403 for anyone who is not one of its readers."""
    assignment = selectors.study_assignment(study=study, user=user)
    if assignment is None:
        raise ApplicationError(NOT_A_READER, status=403)
    return assignment


def results_study(request: Request, pk: int) -> ReaderStudy:
    if not selectors.study_results_visible(request.user):
        raise PermissionDenied("Only admins and researchers see a study's results.")
    return selectors.study_get(pk=pk)


class StudyItemListApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="My items of a study, in my order, with my scores",
        responses={
            200: StudyItemListSerializer,
            403: OpenApiResponse(ERROR, description="not a reader"),
            404: NO_STUDY,
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        study = selectors.study_get(pk=pk)
        assignment = reader_assignment(study, request.user)
        view = selectors.reader_view(study=study, assignment=assignment, media_url=settings.MEDIA_URL)
        return Response(StudyItemListSerializer(view).data)


class StudyRatingSaveApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Save my score of an item",
        description="A pair of sentences takes `score` (left) and `second_score` (right), 1-5; any other item one score, 1-10.",
        request=StudyRatingSaveSerializer,
        responses={
            200: StudyRatingSerializer,
            400: OpenApiResponse(ERROR, description="a score off the item's scale, or the wrong number of scores"),
            403: OpenApiResponse(ERROR, description="not a reader"),
            404: OpenApiResponse(ERROR, description="no such study or item"),
        },
    )
    def put(self, request: Request, pk: int, key: str) -> Response:
        study = selectors.study_get(pk=pk)
        reader = signed_in_user(request)
        scores = validated_input(StudyRatingSaveSerializer, request.data)
        rating = study_rating_save(study=study, key=key, reader=reader, **scores)
        progress = selectors.reader_progress(study=study, reader=reader)
        data = {"key": key, "score": rating.score, "second_score": rating.second_score, **progress}
        return Response(StudyRatingSerializer(data).data)


class StudyResultsApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="A study's results: per arm mean and range, per reader means, paired Wilcoxon tests",
        responses={200: StudyResultsSerializer, 403: OpenApiResponse(ERROR, description="experts"), 404: NO_STUDY},
    )
    def get(self, request: Request, pk: int) -> Response:
        study = results_study(request, pk)
        return Response(StudyResultsSerializer(selectors.study_results(study=study)).data)


class StudyExportApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Every score of a study with its arm and source, CSV or JSON array (streamed)",
        operation_id="studies_export_retrieve",
        parameters=[EXPORT_FORMAT],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): StudyExportRowSerializer(many=True),
            400: OpenApiResponse(ERROR, description="a format other than csv or json"),
            403: OpenApiResponse(ERROR, description="experts"),
            404: NO_STUDY,
        },
    )
    def get(self, request: Request, pk: int, fmt: str) -> StreamingHttpResponse:
        study = results_study(request, pk)
        columns = selectors.EXPORT_COLUMNS
        return stream_export(
            export_format(fmt),
            selectors.study_export_rows(study=study),
            f"reader-study-{study.pk}",
            columns,
            lambda records: ([record[name] for name in columns] for record in records),
        )
