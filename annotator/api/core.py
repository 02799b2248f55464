"""The JSON API: one class per operation, each a thin adapter over selectors and services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..models import Dataset, Image, Job
from ..permissions import IsAdminRole, truth_hidden_q
from ..serializers.core import DatasetSerializer, ImageSerializer, JobCreateSerializer, JobSerializer
from ..services.job_state import job_cancel
from ..services.jobs import job_create
from .inputs import validated_input


class DatasetListApi(generics.ListAPIView):
    serializer_class = DatasetSerializer

    def get_queryset(self) -> Any:
        return selectors.dataset_list()


class DatasetDetailApi(generics.RetrieveAPIView):
    serializer_class = DatasetSerializer

    def get_queryset(self) -> Any:
        return selectors.dataset_list()

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dataset = self.get_object()
        data = dict(self.get_serializer(dataset).data)
        data["summary"] = selectors.dataset_summary(dataset=dataset, user=request.user)
        return Response(data)


@extend_schema(
    parameters=[
        OpenApiParameter("dataset", int, description="only images of this dataset"),
        OpenApiParameter("split", str, enum=Image.Split.values),
        OpenApiParameter("label", str),
    ]
)
class _ImagesApi(generics.GenericAPIView):
    """Images with their ground truth only where the truth rule lets the user see it (the serializer asks it
    of each image's dataset)."""

    serializer_class = ImageSerializer


class ImageListApi(_ImagesApi, generics.ListAPIView):
    serializer_class = ImageSerializer

    def get_queryset(self) -> Any:
        params = self.request.query_params
        dataset = None
        if params.get("dataset"):
            dataset = generics.get_object_or_404(Dataset, pk=params["dataset"])
        images = selectors.image_list(dataset=dataset, split=params.get("split"), label=params.get("label"))
        if params.get("label"):  # filtering by label would tell the label: only where the truth is visible
            images = images.exclude(truth_hidden_q(self.request.user))
        return images


class ImageDetailApi(_ImagesApi, generics.RetrieveAPIView):
    serializer_class = ImageSerializer

    def get_queryset(self) -> Any:
        return selectors.image_list()


@extend_schema(parameters=[OpenApiParameter("dataset", int, description="only jobs of this dataset")])
class JobListApi(generics.ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self) -> Any:
        dataset_id = self.request.query_params.get("dataset")
        dataset = generics.get_object_or_404(Dataset, pk=dataset_id) if dataset_id else None
        return selectors.job_list(dataset=dataset)


class JobCreateApi(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def post(self, request: Request) -> Response:
        job = job_create(created_by=request.user, **validated_input(JobCreateSerializer, request.data))
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)


class JobDetailApi(generics.RetrieveAPIView):
    serializer_class = JobSerializer

    def get_queryset(self) -> Any:
        return selectors.job_list()


class JobCancelApi(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        request=None,
        responses={200: JobSerializer, 409: OpenApiResponse(description="the job has already finished")},
    )
    def post(self, request: Request, pk: int) -> Response:
        job = generics.get_object_or_404(Job, pk=pk)
        return Response(JobSerializer(job_cancel(job=job), context={"request": request}).data)
