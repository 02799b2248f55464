"""Roles and who sees what. Three groups (seeded by a migration): expert, admin, researcher. Django
superusers and staff count as admins.

The one blindness rule, for survey answers and fracture labels alike: while a dataset is blind (the
default) an expert sees only their own labels; admins and researchers (who read and export, never label)
see everyone's, and so does everybody once an admin opens the dataset.

The truth rule, one per dataset: the ground truth of an image -- its class label, its findings (outlines,
masks, pathology, lesion type, concepts, descriptions), its metadata (a report, the known fracture
descriptors) and every count or summary of those (label and finding counts, patch labels) -- is hidden from
an expert on a dataset that is blind (``annotation_blind``, the default), and always on a hip-fracture
dataset, whose images the experts label themselves; by every page, filter, API, export, deep-zoom outline
and error message. Once an admin opens a mammogram dataset its experts see the truth (the survey's context
outlines and labels); admins and researchers always see it. ``user_sees_truth`` asks it of one dataset,
``truth_hidden_q`` is the same rule as a queryset filter; nothing else decides it.

Not truth, so visible to everyone who sees the page: the pixels (the unit's top patches, the context image,
thumbnails without their outlines), and what a model says -- its decisions, maps and evaluation on a split,
and mining's suggested concept for a unit (Network Dissection matches the unit's masks against the findings'
concept masks, but the name it suggests is the model's output about a unit, not any image's truth).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import Dataset

__all__ = [
    "ADMIN_GROUP",
    "EXPERT_GROUP",
    "RESEARCHER_GROUP",
    "CanAnnotate",
    "IsAdminRole",
    "patch_counts_seen",
    "truth_hidden_q",
    "user_can_annotate",
    "user_is_admin",
    "user_roles",
    "user_sees_others_labels",
    "user_sees_truth",
]

ADMIN_GROUP, EXPERT_GROUP, RESEARCHER_GROUP = "admin", "expert", "researcher"


def _group_names(user: Any) -> frozenset[str]:
    """The user's group names, read once per user object and kept on it (as Django's ModelBackend keeps
    permissions): a page asks several role questions about the request's user, one query answers them all.
    A user object whose groups change afterwards must be fetched again to see the change."""
    names = getattr(user, "_group_names_cache", None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True))
        user._group_names_cache = names
    return names


def user_is_admin(user: Any) -> bool:
    if not user or not user.is_authenticated:
        return False
    return bool(user.is_superuser or user.is_staff or ADMIN_GROUP in _group_names(user))


def user_roles(user: Any) -> list[str]:
    roles = set(_group_names(user)) if user.is_authenticated else set()
    if user_is_admin(user):
        roles.add(ADMIN_GROUP)
    return sorted(roles)


def user_can_annotate(user: Any) -> bool:
    """Experts and admins answer surveys and label images; researchers only read and export."""
    if not user or not user.is_authenticated:
        return False
    return user_is_admin(user) or EXPERT_GROUP in _group_names(user)


def _is_researcher(user: Any) -> bool:
    return bool(user.is_authenticated and RESEARCHER_GROUP in _group_names(user))


def user_sees_others_labels(user: Any, dataset: Dataset) -> bool:
    """Whether ``user`` sees other experts' answers, labels, history and agreement on ``dataset``."""
    if user_is_admin(user) or not dataset.annotation_blind:
        return True
    return _is_researcher(user)


# Kinds whose images the experts label themselves: their truth stays hidden from experts, blind or not.
TRUTH_ALWAYS_HIDDEN_KINDS = (Dataset.Kind.HIP_FRACTURE,)


def _sees_all_truth(user: Any) -> bool:
    return user_is_admin(user) or _is_researcher(user)


def user_sees_truth(user: Any, dataset: Dataset) -> bool:
    """Whether ``user`` may see the ground truth of ``dataset``'s images (the truth rule above)."""
    if _sees_all_truth(user):
        return True
    return not (dataset.annotation_blind or dataset.kind in TRUTH_ALWAYS_HIDDEN_KINDS)


def patch_counts_seen(user: Any, dataset: Dataset, by_split: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Patches per split and label as ``user`` may see them: a patch's label is its finding's pathology, so
    for a user the truth rule hides ``dataset``'s truth from, per split only, under "all"."""
    if user_sees_truth(user, dataset):
        return by_split
    return {split: {"all": sum(counts.values())} for split, counts in by_split.items()}


def truth_hidden_q(user: Any, *, dataset: str = "dataset") -> Q:
    """The truth rule as a filter: the rows whose dataset (reached by the lookup ``dataset``, e.g.
    ``"image__dataset"``) hides its images' truth from ``user``; matches no row for admins and researchers.
    ``exclude`` it to keep what ``user`` may see the truth of. Agrees with ``user_sees_truth``."""
    if _sees_all_truth(user):
        return Q(pk__in=[])
    return Q(**{f"{dataset}__annotation_blind": True}) | Q(**{f"{dataset}__kind__in": TRUTH_ALWAYS_HIDDEN_KINDS})


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
