"""The explanation API: an image's or upload's explanation (computed on first request, then cached), and
explaining a newly uploaded image in one request.

Any signed-in user reads a dataset image's explanation (the units' names as they may see them); an
upload and its explanation are visible to its uploader and admins only (others get 404, as if it did
not exist).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import ApplicationError
from ..models import Explanation, Image, TrainedModel
from ..selectors import explanations as selectors
from ..serializers.explanations import ExplainUploadSerializer, ExplanationSerializer
from ..services.explanations import explanation_get
from ..services.uploads import upload_create, upload_delete
from .inputs import signed_in_user, validated_input

__all__ = ["ImageExplanationApi", "UploadExplainApi", "UploadExplanationApi"]

TAGS = ["explanations"]
QUERY = [
    OpenApiParameter("model", int, description="trained model id; default the newest that can explain it"),
    OpenApiParameter("method", str, enum=Explanation.Method.values, description="class map (default cam)"),
]


UNREADABLE = OpenApiResponse(description="the model's checkpoint cannot be read (the model must be retrained)")


def _method(value: str | None) -> str:
    method = value or Explanation.Method.CAM
    if method not in Explanation.Method.values:
        raise ApplicationError(f"method must be one of {', '.join(Explanation.Method.values)}")
    return method


def _model(value: Any, candidates: Any) -> TrainedModel:
    if value in (None, ""):
        trained = candidates.first()
    elif not str(value).isdigit():
        raise ApplicationError("model must be a trained model's id")
    else:
        trained = candidates.filter(pk=int(value)).first()
    if trained is None:
        raise ApplicationError("no trained model can explain this image", status=404)
    return trained


def _response(request: Request, explanation: Explanation, code: int = status.HTTP_200_OK) -> Response:
    units = selectors.viewer_units(explanation=explanation, user=request.user)
    context = {"units": units, "text": selectors.viewer_text(explanation=explanation, units=units)}
    return Response(ExplanationSerializer(explanation, context=context).data, status=code)


@extend_schema(tags=TAGS, parameters=QUERY, responses={200: ExplanationSerializer, 409: UNREADABLE})
class ImageExplanationApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        image = generics.get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
        trained = _model(request.query_params.get("model"), selectors.models_for_image(image=image))
        method = _method(request.query_params.get("method"))
        return _response(request, explanation_get(trained=trained, image=image, method=method))


@extend_schema(tags=TAGS, parameters=QUERY, responses={200: ExplanationSerializer, 409: UNREADABLE})
class UploadExplanationApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        upload = generics.get_object_or_404(selectors.upload_visible(user=request.user), pk=pk)
        trained = _model(request.query_params.get("model"), TrainedModel.objects.order_by("-created_at", "-id"))
        method = _method(request.query_params.get("method"))
        return _response(request, explanation_get(trained=trained, upload=upload, method=method))


class UploadExplainApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        tags=TAGS,
        request={"multipart/form-data": ExplainUploadSerializer},
        responses={201: ExplanationSerializer, 409: UNREADABLE},
    )
    def post(self, request: Request) -> Response:
        data = validated_input(ExplainUploadSerializer, request.data)
        trained = _model(data.get("model"), TrainedModel.objects.order_by("-created_at", "-id"))
        upload = upload_create(owner=signed_in_user(request), uploaded=data["file"])
        try:
            explanation = explanation_get(trained=trained, upload=upload, method=data["method"])
        except BaseException:
            upload_delete(upload=upload)  # nothing is left of a request that failed
            raise
        return _response(request, explanation, status.HTTP_201_CREATED)
