"""Roles and who sees what. Three groups (seeded by a migration): expert, admin, researcher. Django
superusers and staff count as admins.

The one blindness rule, for survey answers and fracture labels alike: while a dataset is blind (the
default) an expert sees only their own labels; admins and researchers (who read and export, never label)
see everyone's, and so does everybody once an admin opens the dataset.

The truth rule: the ground truth of an image (its class label, findings and metadata such as the report
or the known fracture descriptors) is hidden from experts wherever they label the image itself -- hip
radiographs -- by every page, filter, API and export; admins and researchers always see it. Mammogram
experts label units, not images, and see the images' labels and findings as the survey's context.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import Dataset

__all__ = [
    "ADMIN_GROUP",
    "EXPERT_GROUP",
    "RESEARCHER_GROUP",
    "CanAnnotate",
    "IsAdminRole",
    "truth_hidden_kinds",
    "user_can_annotate",
    "user_is_admin",
    "user_roles",
    "user_sees_others_labels",
    "user_sees_truth",
]

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


def user_can_annotate(user: Any) -> bool:
    """Experts and admins answer surveys and label images; researchers only read and export."""
    if not user or not user.is_authenticated:
        return False
    return user_is_admin(user) or user.groups.filter(name=EXPERT_GROUP).exists()


def user_sees_others_labels(user: Any, dataset: Dataset) -> bool:
    """Whether ``user`` sees other experts' answers, labels, history and agreement on ``dataset``."""
    if user_is_admin(user) or not dataset.annotation_blind:
        return True
    return bool(user.is_authenticated and user.groups.filter(name=RESEARCHER_GROUP).exists())


def truth_hidden_kinds(user: Any) -> list[str]:
    """The dataset kinds whose images' ground truth ``user`` must not see (the truth rule above)."""
    if user_is_admin(user) or (user.is_authenticated and user.groups.filter(name=RESEARCHER_GROUP).exists()):
        return []
    return [Dataset.Kind.HIP_FRACTURE]


def user_sees_truth(user: Any, dataset: Dataset) -> bool:
    """Whether ``user`` may see the ground truth of ``dataset``'s images."""
    return dataset.kind not in truth_hidden_kinds(user)


class IsAdminRole(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_admin(request.user)


class CanAnnotate(BasePermission):
    message = "Only experts and admins can annotate; researchers can read and export."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or user_can_annotate(request.user)
