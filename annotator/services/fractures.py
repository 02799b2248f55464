"""Writes for hip-fracture labelling: one expert's descriptors for one image, versioned, with history.

The descriptors are validated at the boundary with ``mining.sentences`` (the same rules the sentence
grammar uses), the sentence they give is stored beside them, and the save goes through
``save_versioned``: a stale version is refused with a 409 carrying the current label, and every accepted
save adds an AnnotationChange row (who, when, before, after) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from mining.sentences import DISPLACEMENTS, LOCATIONS, FractureDescriptors, fracture_sentence

from ..errors import ApplicationError
from ..models import AnnotationChange, Dataset, FractureDescriptor, Image
from ..permissions import user_can_annotate, user_sees_others_labels
from .versioned import save_versioned

__all__ = ["DESCRIPTOR_FIELDS", "fracture_descriptor_save"]

DESCRIPTOR_FIELDS = ("fracture", "displacement", "comminuted", "impacted", "location", "avulsed_fragment")
_CHOICES = {"displacement": DISPLACEMENTS, "location": LOCATIONS}


def _descriptors(
    fracture: Any, displacement: Any, comminuted: Any, impacted: Any, location: Any, avulsed_fragment: Any
) -> FractureDescriptors:
    """Checked descriptors; a no-fracture label drops every other field (they would mean nothing)."""
    flags = {"fracture": fracture, "comminuted": comminuted, "impacted": impacted, "avulsed_fragment": avulsed_fragment}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ApplicationError(f"{name} must be true or false", {"field": name})
    for name, value in (("displacement", displacement), ("location", location)):
        if value is not None and not isinstance(value, str):
            raise ApplicationError(f"{name} must be text", {"field": name})
    if not fracture:
        return FractureDescriptors(fracture=False)
    descriptors = FractureDescriptors(
        fracture=True,
        displacement=displacement or None,
        comminuted=comminuted,
        impacted=impacted,
        location=location or None,
        avulsed_fragment=avulsed_fragment,
    )
    errors = descriptors.validate()
    if errors:
        wrong = [name for name, choices in _CHOICES.items() if getattr(descriptors, name) not in choices]
        message = "; ".join(errors)
        raise ApplicationError(
            message[0].upper() + message[1:] + ".", {"field": wrong[0] if wrong else "", "errors": errors}
        )
    return descriptors


@transaction.atomic
def fracture_descriptor_save(
    *,
    image: Image,
    expert: User,
    version: int,
    fracture: bool,
    displacement: str = "",
    comminuted: bool = False,
    impacted: bool = False,
    location: str = "",
    avulsed_fragment: bool = False,
) -> FractureDescriptor:
    """Save one expert's descriptors for an image. ``version`` is the one the expert loaded (0: none yet).

    Raises ApplicationError: 403 for a user who may not label, 400 for an image outside a hip-fracture
    dataset or an incomplete/unknown label, 409 when someone saved since ``version``.
    """
    if not user_can_annotate(expert):
        raise ApplicationError("Only experts and admins can label images; researchers can read and export.", status=403)
    if image.dataset.kind != Dataset.Kind.HIP_FRACTURE:
        raise ApplicationError(
            f"image {image.pk} is not in a hip-fracture dataset, so it takes no fracture descriptors",
            {"field": "image"},
        )
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ApplicationError("version must be a whole number", {"field": "version"}) from None
    if version < 0:
        raise ApplicationError("version must be 0 (no label yet) or the version you loaded", {"field": "version"})
    descriptors = _descriptors(fracture, displacement, comminuted, impacted, location, avulsed_fragment)
    values = {
        "fracture": descriptors.fracture,
        "displacement": descriptors.displacement or "",
        "comminuted": descriptors.comminuted,
        "impacted": descriptors.impacted,
        "location": descriptors.location or "",
        "avulsed_fragment": descriptors.avulsed_fragment,
        "sentence": fracture_sentence(descriptors),
    }
    return save_versioned(
        model=FractureDescriptor,
        lookup={"image": image, "expert": expert},
        values=values,
        version=version,
        target=AnnotationChange.Target.FRACTURE_DESCRIPTOR,
        user=expert,
        what="fracture label",
        history={"image": image},
        names_visible=user_sees_others_labels(expert, image.dataset),
    )
