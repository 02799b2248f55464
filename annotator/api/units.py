"""Unit survey API: units, their top patches, expert answers, consensus, agreement, history, exports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from ..errors import ApplicationError
from ..models import AnnotationChange, TrainedModel, VersionedLabel
from ..permissions import CanAnnotate, IsAdminRole, user_sees_others_labels
from ..selectors import trained_model_get
from ..selectors import units as unit_selectors
from ..serializers.units import (
    AnnotationChangeSerializer,
    ConceptSerializer,
    TopActivationSerializer,
    UnitAnnotationSaveSerializer,
    UnitAnnotationSerializer,
    UnitConsensusSaveSerializer,
    UnitConsensusSerializer,
    UnitSerializer,
)
from ..services.annotations import unit_annotation_save, unit_consensus_clear, unit_consensus_save
from ..streaming import stream_export
from .inputs import EXPORT_FORMAT, export_format, signed_in_user, validated_input

__all__ = [
    "ConceptListApi",
    "ModelAgreementApi",
    "UnitAnnotationListApi",
    "UnitAnnotationSaveApi",
    "UnitConsensusApi",
    "UnitDetailApi",
    "UnitExportApi",
    "UnitHistoryApi",
    "UnitListApi",
    "unit_export_response",
]

# The JSON export: an array of units, each with its experts' answers nested (selectors.unit_export_rows).
UNIT_EXPORT_JSON = {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
CONFLICT = OpenApiResponse(description='{"message": ..., "extra": {"version": n, "current": {...}}}: saved since')


def _put_label(
    view: APIView, given: type[Serializer], save: Callable[..., VersionedLabel], user_as: str, shown: type[Serializer]
) -> Response:
    """The PUT of a label on the view's unit: the body checked with ``given``, then ``save(unit=..., <user_as>=the
    signed-in user, **body)`` (a stale version gets 409), and the saved label answered in ``shown``'s shape."""
    values = validated_input(given, view.request.data)
    unit = unit_selectors.unit_get(pk=view.kwargs["pk"])
    label = save(unit=unit, **{user_as: signed_in_user(view.request)}, **values)
    return Response(shown(label).data)


@extend_schema(
    parameters=[
        OpenApiParameter("class", str, description="units selected for this class"),
        OpenApiParameter("status", str, enum=["mine", "todo", "annotated", "unannotated"]),
        OpenApiParameter("concept", str, description="a BI-RADS concept code named in an answer or the consensus"),
        OpenApiParameter("suggested", str, description="the suggested concept's code"),
        OpenApiParameter("q", str, description="a channel, 'layer4:12' or a unit id"),
        OpenApiParameter("all", bool, description="include units that were not selected"),
    ]
)
class UnitListApi(generics.ListAPIView):
    serializer_class = UnitSerializer

    def get_queryset(self) -> Any:
        trained = trained_model_get(pk=self.kwargs["pk"])
        params = self.request.query_params
        return unit_selectors.unit_list(
            trained=trained,
            user=self.request.user,
            selected_for=params.get("class", ""),
            status=params.get("status", ""),
            concept=params.get("concept", ""),
            suggested=params.get("suggested", ""),
            search=params.get("q", ""),
            selected_only=params.get("all") not in ("1", "true"),
        )


class UnitDetailApi(APIView):
    """A unit with its top patches, my answers, and (when allowed) everyone else's and the consensus."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        survey = unit_selectors.unit_survey(unit=unit_selectors.unit_get(pk=pk), user=request.user)
        consensus = survey["consensus"]
        return Response(
            {
                "unit": UnitSerializer(survey["unit"]).data,
                "top_activations": TopActivationSerializer(survey["activations"], many=True).data,
                "mine": UnitAnnotationSerializer(survey["mine"]).data if survey["mine"] else None,
                "others": UnitAnnotationSerializer(survey["others"], many=True).data,
                "agreement": survey["agreement"],
                "consensus": UnitConsensusSerializer(consensus).data if consensus else None,
                "neighbours": survey["neighbours"],
            }
        )


class UnitAnnotationSaveApi(APIView):
    """Save my answers. Send the version you loaded (0 for a first answer); a stale one gets 409."""

    permission_classes = [CanAnnotate]

    @extend_schema(request=UnitAnnotationSaveSerializer, responses={200: UnitAnnotationSerializer, 409: CONFLICT})
    def put(self, request: Request, pk: int) -> Response:
        return _put_label(self, UnitAnnotationSaveSerializer, unit_annotation_save, "expert", UnitAnnotationSerializer)


class UnitAnnotationListApi(APIView):
    """Every answer on a unit that the caller may see (only their own while the dataset is blind)."""

    @extend_schema(responses={200: UnitAnnotationSerializer(many=True)})
    def get(self, request: Request, pk: int) -> Response:
        answers = unit_selectors.unit_annotations_visible(unit=unit_selectors.unit_get(pk=pk), user=request.user)
        return Response(UnitAnnotationSerializer(answers, many=True).data)


class UnitConsensusApi(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(request=UnitConsensusSaveSerializer, responses={200: UnitConsensusSerializer, 409: CONFLICT})
    def put(self, request: Request, pk: int) -> Response:
        return _put_label(self, UnitConsensusSaveSerializer, unit_consensus_save, "admin", UnitConsensusSerializer)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        unit_consensus_clear(unit=unit_selectors.unit_get(pk=pk), admin=signed_in_user(request))
        return Response(status=204)


class UnitHistoryApi(generics.ListAPIView):
    """Changes to a unit's answers and consensus: all of them for admins and researchers, one's own for experts."""

    serializer_class = AnnotationChangeSerializer

    def get_queryset(self) -> QuerySet[AnnotationChange]:
        return unit_selectors.unit_history(unit=unit_selectors.unit_get(pk=self.kwargs["pk"]), user=self.request.user)


class ModelAgreementApi(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        trained = trained_model_get(pk=pk)
        if not user_sees_others_labels(request.user, trained.dataset):
            raise ApplicationError("Agreement is hidden from experts while the survey is blind.", status=403)
        return Response(
            {
                **unit_selectors.model_agreement(trained=trained),
                "progress": unit_selectors.unit_progress(trained=trained, user=request.user),
            }
        )


class ConceptListApi(APIView):
    """The BI-RADS lexicon (and normal anatomy) that answers name concepts from."""

    pagination_class = None

    @extend_schema(responses={200: ConceptSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(unit_selectors.concept_lexicon())


class UnitExportApi(APIView):
    """The labelled unit table, streamed: `csv` (one row per unit and expert) or `json` (one object per unit).
    Experts get it only when the survey is not blind."""

    @extend_schema(
        operation_id="models_units_export_retrieve",
        parameters=[
            EXPORT_FORMAT,
            OpenApiParameter("all", bool, description="every unit, not only selected or answered ones"),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): UNIT_EXPORT_JSON},
    )
    def get(self, request: Request, pk: int, fmt: str) -> StreamingHttpResponse:
        trained = trained_model_get(pk=pk)
        return unit_export_response(
            trained=trained, user=request.user, fmt=fmt, everything=request.query_params.get("all") in ("1", "true")
        )


def unit_export_response(*, trained: TrainedModel, user: Any, fmt: str, everything: bool) -> StreamingHttpResponse:
    """Shared by the API and the export page link: admins and researchers always, experts once the survey
    is not blind (the blindness rule)."""
    if not user_sees_others_labels(user, trained.dataset):
        raise ApplicationError(
            "Exports hold every expert's answers; experts cannot download them while the survey is blind.", status=403
        )
    export_format(fmt)
    classes = list(trained.classes)
    return stream_export(
        fmt,
        unit_selectors.unit_export_rows(trained=trained, everything=everything),
        f"units-model{trained.pk}",
        unit_selectors.export_csv_header(classes),
        lambda records: unit_selectors.export_csv_rows(records, classes),
    )
