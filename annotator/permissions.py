"""Roles. Three groups (seeded by a migration): expert, admin, researcher. Django superusers and staff count as admins."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

ADMIN_GROUP, EXPERT_GROUP, RESEARCHER_GROUP = "admin", "expert", "researcher"


def user_is_admin(user: Any) -> bool:
    if not user or not user.is_authenticated:
        return False
    return bool(user.is_superuser or user.is_staff or user.groups.filter(name=ADMIN_GROUP).exists())


def user_roles(user: Any) -> list[str]:
    roles = list(user.groups.values_list("name", flat=True)) if user.is_authenticated else []
    if user_is_admin(user) and ADMIN_GROUP not in roles:
        roles.append(ADMIN_GROUP)
    return sorted(roles)


class ReadOrAdminWrite(BasePermission):
    """Any signed-in user reads; only admins change."""

    message = "Only admins can do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or user_is_admin(request.user)


class IsAdminRole(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_admin(request.user)


def user_can_annotate(user: Any) -> bool:
    """Experts and admins answer surveys and label images; researchers only read and export."""
    if not user or not user.is_authenticated:
        return False
    return user_is_admin(user) or user.groups.filter(name=EXPERT_GROUP).exists()


class CanAnnotate(BasePermission):
    message = "Only experts and admins can annotate; researchers can read and export."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or user_can_annotate(request.user)
