"""POST /api/jobs/<id>/resume/: an admin resumes a failed or cancelled training job from its last
checkpointed epoch (``services.training_resume``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import Job
from ..permissions import IsAdminRole
from ..serializers.core import JobSerializer
from ..services.training_resume import training_job_resume


class JobResumeApi(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        request=None,
        responses={
            201: JobSerializer,
            409: OpenApiResponse(description="not a failed or cancelled training job with a checkpointed epoch"),
        },
        description="A new training job that goes on at the epoch after the last one this job checkpointed.",
    )
    def post(self, request: Request, pk: int) -> Response:
        job = training_job_resume(job=generics.get_object_or_404(Job, pk=pk), created_by=request.user)
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)
