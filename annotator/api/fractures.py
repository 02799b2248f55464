"""The fracture-labelling API: one class per operation, each a thin adapter over selectors and services.

Any signed-in user reads and exports; experts and admins save labels (researchers get 403).
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..permissions import CanAnnotate, user_sees_others_labels
from ..selectors import fractures as selectors
from ..selectors import image_get
from ..serializers.fractures import (
    FractureExportRowSerializer,
    FractureHistorySerializer,
    FractureLabelListSerializer,
    FractureLabelSaveSerializer,
    FractureLabelSerializer,
    FractureQueueSerializer,
)
from ..services.fractures import fracture_descriptor_save
from ..streaming import stream_csv, stream_json
from .inputs import EXPORT_FORMAT, export_format, signed_in_user, validated_input

__all__ = [
    "FractureExportApi",
    "FractureHistoryApi",
    "FractureLabelDetailApi",
    "FractureLabelListApi",
    "FractureLabelSaveApi",
    "FractureQueueApi",
]

TAGS = ["fractures"]
ERROR = inline_serializer("FractureError", {"message": serializers.CharField(), "extra": serializers.DictField()})


class FractureLabelListApi(APIView):
    @extend_schema(tags=TAGS, responses={200: FractureLabelListSerializer}, summary="An image's fracture labels")
    def get(self, request: Request, pk: int) -> Response:
        image = image_get(pk=pk)
        labels = list(selectors.fracture_labels_visible(image=image, user=request.user))
        mine = next((label for label in labels if label.expert_id == request.user.pk), None)
        data = {
            "image": image.pk,
            "dataset": image.dataset_id,
            "blind": not user_sees_others_labels(request.user, image.dataset),
            "mine": mine,
            "labels": labels,
        }
        return Response(FractureLabelListSerializer(data).data)


class FractureLabelDetailApi(APIView):
    @extend_schema(tags=TAGS, responses={200: FractureLabelSerializer}, summary="One fracture label")
    def get(self, request: Request, pk: int) -> Response:
        label = selectors.fracture_label_get(pk=pk, user=request.user)
        return Response(FractureLabelSerializer(label).data)


class FractureLabelSaveApi(APIView):
    permission_classes = [CanAnnotate]

    @extend_schema(
        tags=TAGS,
        summary="Save my fracture label for an image",
        description=(
            "Send the version you loaded (0 when you had no label). If someone saved since, nothing is "
            "written and the answer is 409 with the current version and label in `extra`."
        ),
        request=FractureLabelSaveSerializer,
        responses={
            200: FractureLabelSerializer,
            400: OpenApiResponse(ERROR, description="incomplete or unknown descriptors"),
            403: OpenApiResponse(ERROR, description="researchers cannot label"),
            409: OpenApiResponse(
                ERROR,
                description="stale version",
                examples=[
                    OpenApiExample(
                        "conflict",
                        value={
                            "message": "This fracture label was changed in another tab or window since you opened it (you had version 1, "
                            "it is now version 2). Your changes were not saved: reload to see the current answers.",
                            "extra": {
                                "version": 2,
                                "current": {
                                    "fracture": False,
                                    "displacement": "",
                                    "comminuted": False,
                                    "impacted": False,
                                    "location": "",
                                    "avulsed_fragment": False,
                                    "sentence": "No fracture was identified on this study.",
                                },
                            },
                        },
                    )
                ],
            ),
        },
    )
    def put(self, request: Request, pk: int) -> Response:
        image = image_get(pk=pk)  # a missing image is a 404 whatever the body
        descriptors = validated_input(FractureLabelSaveSerializer, request.data)
        label = fracture_descriptor_save(image=image, expert=signed_in_user(request), **descriptors)
        return Response(FractureLabelSerializer(label).data)


class FractureHistoryApi(APIView):
    @extend_schema(
        tags=TAGS,
        responses={200: FractureHistorySerializer(many=True)},
        summary="Changes to an image's fracture labels",
        description="Newest first. Admins see every expert's changes; experts on a blind dataset their own.",
    )
    def get(self, request: Request, pk: int) -> Response:
        changes = selectors.fracture_history(image=image_get(pk=pk), user=request.user)
        return Response(FractureHistorySerializer(changes, many=True).data)


class FractureQueueApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="The next image I have not labelled, and the progress counts",
        parameters=[OpenApiParameter("after", int, description="the image you are on: the next one after it")],
        responses={200: FractureQueueSerializer},
    )
    def get(self, request: Request, pk: int) -> Response:
        dataset = selectors.fracture_dataset_get(pk=pk)
        after = request.query_params.get("after")
        try:
            after_id = int(after) if after else None
        except ValueError:
            raise serializers.ValidationError({"after": "must be an image id"}) from None
        next_image = selectors.fracture_next_image(dataset=dataset, user=request.user, after=after_id)
        data = {
            "dataset": dataset.pk,
            "next_image": next_image,
            "next_url": reverse("fracture-label", args=[dataset.pk, next_image]) if next_image else "",
            "progress": selectors.fracture_progress(dataset=dataset, user=request.user),
        }
        return Response(FractureQueueSerializer(data).data)


class FractureExportApi(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Fracture labels with their sentences, CSV or JSON array (streamed)",
        operation_id="datasets_fractures_export_retrieve",
        parameters=[EXPORT_FORMAT],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): FractureExportRowSerializer(many=True),
        },
    )
    def get(self, request: Request, pk: int, fmt: str) -> StreamingHttpResponse:
        dataset = selectors.fracture_dataset_get(pk=pk)
        rows = selectors.fracture_export_rows(dataset=dataset, user=request.user)
        stem = f"fracture-labels-{dataset.pk}"
        if export_format(fmt) == "json":
            return stream_json(rows, f"{stem}.json")
        columns = selectors.export_columns(dataset=dataset, user=request.user)
        return stream_csv(columns, ([row[name] for name in columns] for row in rows), f"{stem}.csv")
