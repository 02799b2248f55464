"""Request inputs read the same way by every area: a body through its input serializer, so an invalid
body is always a 400 that the exception handler (``api/errors.py``) words; the signed-in user a write
is done for; and the format of an ``export.<fmt>`` route."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers
from rest_framework.request import Request

from ..errors import ApplicationError

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMATS", "export_format", "signed_in_user", "validated_input"]


def validated_input(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The validated fields of ``data``; raises ``ValidationError`` (400) when it does not fit."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def signed_in_user(request: Request) -> User:
    """The user a write is done for. The permission classes already refuse anonymous requests; this
    says so to the type checker, and answers 403 like them should one get through."""
    if not isinstance(request.user, User):
        raise exceptions.NotAuthenticated()
    return request.user


EXPORT_FORMATS = ("csv", "json")
EXPORT_FORMAT = OpenApiParameter(
    "fmt", str, OpenApiParameter.PATH, enum=list(EXPORT_FORMATS), description="csv or json"
)


def export_format(fmt: str) -> str:
    """The ``<fmt>`` of an ``export.<fmt>`` route, the same rule for every export: csv or json, else 400."""
    if fmt not in EXPORT_FORMATS:
        raise ApplicationError("format must be csv or json")
    return fmt
