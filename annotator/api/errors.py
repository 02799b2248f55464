"""One place that turns service errors into API responses with a clear message: every error the API
answers is `{"message": ..., "extra": {...}}` (set as REST_FRAMEWORK["EXCEPTION_HANDLER"])."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import ApplicationError

__all__ = ["bad_request", "exception_handler", "not_found", "server_error"]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"message": f"The request body is larger than {limit} bytes.", "extra": {"limit_bytes": limit}},
            status=413,
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "message" not in response.data:
        text = response.data.get("detail")
        response.data = {"message": str(text) if text else "Invalid input.", "extra": response.data}
    return response


# Django's own error views (handler400/404/500): JSON under /api/, whatever failed before a view ran
# (an unknown route, a body over DATA_UPLOAD_MAX_MEMORY_SIZE read by middleware), the HTML pages elsewhere.


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return JsonResponse({"message": f"The request body is larger than {limit} bytes.", "extra": {}}, status=413)
    return JsonResponse({"message": "Bad request.", "extra": {}}, status=400)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"message": "No such API route or object.", "extra": {}}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse({"message": "Internal server error; it has been logged.", "extra": {}}, status=500)
