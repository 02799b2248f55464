"""fracture_descriptor_save: validation at the boundary, the stored sentence, version conflicts between
two tabs or two experts, and the history of every change."""

from __future__ import annotations

import pytest

from annotator.errors import ApplicationError
from annotator.models import AnnotationChange, Dataset, FractureDescriptor
from annotator.services.fractures import fracture_descriptor_save
from mining.sentences import NO_FRACTURE_SENTENCE
from tests.factories import DatasetFactory, ImageFactory, UserFactory

pytestmark = pytest.mark.django_db

SUBCAPITAL = {
    "fracture": True,
    "displacement": "moderately displaced",
    "comminuted": True,
    "impacted": False,
    "location": "subcapital",
    "avulsed_fragment": False,
}
SUBCAPITAL_SENTENCE = "There is a moderately displaced, comminuted fracture of the subcapital neck of femur."


@pytest.fixture
def hip_image():
    dataset = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    return ImageFactory(dataset=dataset, label="fracture")


def test_first_save_creates_version_1_with_its_sentence_and_a_history_row(hip_image, expert_user):
    label = fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **SUBCAPITAL)

    label.refresh_from_db()
    assert (label.version, label.sentence) == (1, SUBCAPITAL_SENTENCE)
    assert (label.fracture, label.displacement, label.comminuted, label.location) == (
        True,
        "moderately displaced",
        True,
        "subcapital",
    )
    change = AnnotationChange.objects.get()
    assert (change.target, change.target_id, change.image_id, change.user_id, change.version) == (
        "fracture_descriptor",
        label.pk,
        hip_image.pk,
        expert_user.pk,
        1,
    )
    assert change.before is None
    assert change.after == {**SUBCAPITAL, "sentence": SUBCAPITAL_SENTENCE}


def test_update_keeps_before_and_after(hip_image, expert_user):
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **SUBCAPITAL)
    severe = {"displacement": "severely displaced", "location": "intertrochanteric"}
    label = fracture_descriptor_save(
        image=hip_image, expert=expert_user, version=1, fracture=True, **severe, impacted=True, avulsed_fragment=True
    )

    assert label.version == 2
    assert label.sentence == (
        "There is a severely displaced, impacted fracture of the intertrochanteric region of the femur "
        "with an avulsed fragment."
    )
    latest = AnnotationChange.objects.filter(target_id=label.pk).order_by("-version").first()
    assert latest.version == 2
    assert latest.before == {**SUBCAPITAL, "sentence": SUBCAPITAL_SENTENCE}
    assert latest.after["location"] == "intertrochanteric" and latest.after["comminuted"] is False
    assert AnnotationChange.objects.count() == 2


def test_two_tabs_the_second_save_is_refused_with_the_current_values(hip_image, expert_user):
    # Both tabs opened the image before any label existed (version 0).
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **SUBCAPITAL)
    with pytest.raises(ApplicationError) as refused:
        fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, fracture=False)

    assert refused.value.status == 409
    assert "changed in another tab or window since you opened it" in refused.value.message
    assert refused.value.extra == {"version": 1, "current": {**SUBCAPITAL, "sentence": SUBCAPITAL_SENTENCE}}
    label = FractureDescriptor.objects.get()
    assert (label.version, label.fracture, label.sentence) == (1, True, SUBCAPITAL_SENTENCE)
    assert AnnotationChange.objects.count() == 1

    # Both tabs on version 1: the first update wins, the second is refused and writes nothing.
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=1, fracture=False)
    with pytest.raises(ApplicationError) as stale:
        fracture_descriptor_save(image=hip_image, expert=expert_user, version=1, **SUBCAPITAL)
    assert stale.value.status == 409
    assert stale.value.extra["version"] == 2
    assert stale.value.extra["current"]["sentence"] == NO_FRACTURE_SENTENCE
    assert FractureDescriptor.objects.get().version == 2
    assert AnnotationChange.objects.count() == 2


def test_each_expert_has_their_own_label(hip_image, expert_user, admin_user):
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **SUBCAPITAL)
    fracture_descriptor_save(image=hip_image, expert=admin_user, version=0, fracture=False)
    assert FractureDescriptor.objects.filter(image=hip_image).count() == 2
    assert FractureDescriptor.objects.get(expert=admin_user).sentence == NO_FRACTURE_SENTENCE


def test_no_fracture_clears_every_other_descriptor(hip_image, expert_user):
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **{**SUBCAPITAL, "avulsed_fragment": True})
    # Every descriptor set, yet no fracture: all of them are dropped.
    descriptors = {"displacement": "mildly displaced", "location": "basicervical", "avulsed_fragment": True}
    label = fracture_descriptor_save(
        image=hip_image, expert=expert_user, version=1, fracture=False, comminuted=True, impacted=True, **descriptors
    )
    label.refresh_from_db()
    assert (
        label.fracture,
        label.displacement,
        label.comminuted,
        label.impacted,
        label.location,
        label.avulsed_fragment,
    ) == (False, "", False, False, "", False)
    assert label.sentence == NO_FRACTURE_SENTENCE


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"fracture": True, "location": "subcapital"}, "displacement", "A fracture needs a displacement."),
        ({"fracture": True, "displacement": "undisplaced"}, "location", "A fracture needs a location."),
        ({"fracture": True}, "displacement", "A fracture needs a displacement; a fracture needs a location."),
        (
            {"fracture": True, "displacement": "slightly displaced", "location": "subcapital"},
            "displacement",
            "Unknown displacement 'slightly displaced'",
        ),
        (
            {"fracture": True, "displacement": "undisplaced", "location": "femoral head"},
            "location",
            "Unknown location 'femoral head'",
        ),
        ({"fracture": "yes"}, "fracture", "fracture must be true or false"),
        (
            {"fracture": True, "displacement": "undisplaced", "location": "subcapital", "impacted": 1},
            "impacted",
            "impacted must be true or false",
        ),
    ],
)
def test_invalid_labels_are_refused_and_nothing_is_written(hip_image, expert_user, values, field, text):
    with pytest.raises(ApplicationError) as refused:
        fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, **values)
    assert refused.value.status == 400
    assert refused.value.extra["field"] == field
    assert refused.value.message.startswith(text)
    assert not FractureDescriptor.objects.exists() and not AnnotationChange.objects.exists()


def test_only_hip_fracture_images_take_descriptors(expert_user):
    mammogram = ImageFactory()
    with pytest.raises(ApplicationError, match="not in a hip-fracture dataset") as refused:
        fracture_descriptor_save(image=mammogram, expert=expert_user, version=0, fracture=False)
    assert refused.value.status == 400
    assert not FractureDescriptor.objects.exists()


def test_researchers_and_users_without_a_role_cannot_label(hip_image, researcher_user):
    for user in (researcher_user, UserFactory(username="nobody")):
        with pytest.raises(ApplicationError) as refused:
            fracture_descriptor_save(image=hip_image, expert=user, version=0, fracture=False)
        assert refused.value.status == 403
    assert not FractureDescriptor.objects.exists()


@pytest.mark.parametrize("version", [-1, "two", None])
def test_a_bad_version_is_a_clear_error(hip_image, expert_user, version):
    with pytest.raises(ApplicationError, match="version") as refused:
        fracture_descriptor_save(image=hip_image, expert=expert_user, version=version, fracture=False)
    assert refused.value.status == 400


def test_a_version_from_the_future_is_a_conflict(hip_image, expert_user):
    fracture_descriptor_save(image=hip_image, expert=expert_user, version=0, fracture=False)
    with pytest.raises(ApplicationError) as refused:
        fracture_descriptor_save(image=hip_image, expert=expert_user, version=7, fracture=False)
    assert refused.value.status == 409 and refused.value.extra["version"] == 1
