"""unit_annotation_save / unit_consensus_save: validation, version check, history."""

from __future__ import annotations

import pytest

from annotator.errors import ApplicationError
from annotator.models import AnnotationChange, UnitAnnotation, UnitConsensus
from annotator.services.annotations import unit_annotation_save, unit_consensus_clear, unit_consensus_save
from tests.factories import UnitFactory, UserFactory

pytestmark = pytest.mark.django_db

SPICULATED = {"description": "spiculated mass edge", "concept": "mass_margin.spiculated", "association": "malignant"}


def test_first_save_creates_version_1_and_a_history_row(expert_user):
    unit = UnitFactory()
    answers = {"recognizable": "yes", "phenomena": [SPICULATED], "confidence": 4, "notes": "clear"}
    saved = unit_annotation_save(unit=unit, expert=expert_user, version=0, **answers)
    assert (saved.version, saved.recognizable, saved.confidence) == (1, "yes", 4)
    assert saved.phenomena == [SPICULATED]
    change = AnnotationChange.objects.get()
    assert (change.target, change.target_id, change.unit_id, change.user, change.version) == (
        "unit_annotation",
        saved.pk,
        unit.pk,
        expert_user,
        1,
    )
    assert change.before is None
    assert change.after["phenomena"] == [SPICULATED]


def test_update_with_the_loaded_version_bumps_it_and_keeps_before_and_after(expert_user):
    unit = UnitFactory()
    unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="unsure")
    saved = unit_annotation_save(unit=unit, expert=expert_user, version=1, recognizable="yes", phenomena=[SPICULATED])
    assert saved.version == 2
    latest = AnnotationChange.objects.order_by("-id").first()
    assert latest.before["recognizable"] == "unsure" and latest.after["recognizable"] == "yes"
    assert AnnotationChange.objects.count() == 2


def test_a_second_tab_with_a_stale_version_gets_409_and_loses_nothing(expert_user):
    unit = UnitFactory()
    unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
    unit_annotation_save(unit=unit, expert=expert_user, version=1, recognizable="yes", notes="tab A")
    with pytest.raises(ApplicationError) as error:
        unit_annotation_save(unit=unit, expert=expert_user, version=1, recognizable="unsure", notes="tab B")
    assert error.value.status == 409
    assert "version 1" in error.value.message and "version 2" in error.value.message
    assert error.value.extra["version"] == 2
    assert error.value.extra["current"]["notes"] == "tab A"
    stored = UnitAnnotation.objects.get()
    assert (stored.notes, stored.version) == ("tab A", 2)
    assert AnnotationChange.objects.count() == 2


def test_creating_when_one_exists_is_a_conflict_too(expert_user):
    unit = UnitFactory()
    unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
    with pytest.raises(ApplicationError) as error:
        unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    assert error.value.status == 409
    assert UnitAnnotation.objects.get().recognizable == "no"


def test_experts_each_have_their_own_answers(expert_user):
    unit = UnitFactory()
    other = UserFactory(username="oscar", groups=["expert"])
    unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    unit_annotation_save(unit=unit, expert=other, version=0, recognizable="no")
    assert dict(UnitAnnotation.objects.values_list("expert__username", "recognizable")) == {
        "eve-expert": "yes",
        "oscar": "no",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recognizable": "maybe"}, "recognizable must be"),
        ({"phenomena": [{"concept": "mass_margin.wobbly"}]}, "unknown BI-RADS concept 'mass_margin.wobbly'"),
        ({"phenomena": [{"association": "sinister"}]}, "phenomenon 1: association must be one of"),
        ({"phenomena": [{}] * 11}, "at most 10 phenomena"),
        ({"phenomena": "spiculated"}, "phenomena must be a list"),
        ({"confidence": 9}, "confidence must be between 1 and 5"),
    ],
)
def test_bad_answers_are_refused_with_a_clear_message(expert_user, kwargs, message):
    with pytest.raises(ApplicationError, match=message):
        unit_annotation_save(unit=UnitFactory(), expert=expert_user, version=0, **kwargs)
    assert not UnitAnnotation.objects.exists()
    assert not AnnotationChange.objects.exists()


def test_consensus_is_versioned_and_can_be_cleared(admin_user):
    unit = UnitFactory()
    label = {"recognizable": "yes", "concept": "mass_margin.spiculated", "association": "malignant"}
    consensus = unit_consensus_save(unit=unit, admin=admin_user, version=0, **label)
    assert (consensus.version, consensus.concept.code, consensus.set_by) == (1, "mass_margin.spiculated", admin_user)
    with pytest.raises(ApplicationError) as error:
        unit_consensus_save(unit=unit, admin=admin_user, version=0, recognizable="no")
    assert error.value.status == 409
    unit_consensus_clear(unit=unit, admin=admin_user)
    assert not UnitConsensus.objects.filter(unit=unit).exists()
    assert AnnotationChange.objects.filter(target="unit_consensus").count() == 2
    with pytest.raises(ApplicationError, match="unknown BI-RADS concept"):
        unit_consensus_save(unit=unit, admin=admin_user, version=0, recognizable="yes", concept="nope")


def test_a_409_names_whoever_made_this_label_kind_s_version_not_another_kind_with_the_same_id(expert_user):
    """The change log holds every kind of label, so row ids collide across kinds: an expert's own stale save
    must not be told that the admin who changed a consensus (or a fracture label) with that id changed it."""
    admin = UserFactory(groups=["admin"])
    unit = UnitFactory()
    saved = unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    # A change of another kind, by the admin, with the same row id and version, logged later.
    AnnotationChange.objects.create(
        target=AnnotationChange.Target.UNIT_CONSENSUS, target_id=saved.pk, unit=unit, user=admin, version=1, after={}
    )
    with pytest.raises(ApplicationError) as refused:
        unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
    assert refused.value.status == 409
    assert "changed in another tab or window since you opened it" in refused.value.message
    assert admin.username not in refused.value.message


def test_a_save_changes_only_its_own_row_whatever_version_other_rows_have(expert_user):
    """The conditional update is on this row (its lookup) and its version, never on every row at that version."""
    other = UserFactory(groups=["expert"])
    unit = UnitFactory()
    mine = unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    theirs = unit_annotation_save(unit=unit, expert=other, version=0, recognizable="yes")
    elsewhere = unit_annotation_save(unit=UnitFactory(), expert=expert_user, version=0, recognizable="yes")
    unit_annotation_save(unit=unit, expert=expert_user, version=1, recognizable="no")
    for row, expected in ((mine, (2, "no")), (theirs, (1, "yes")), (elsewhere, (1, "yes"))):
        row.refresh_from_db()
        assert (row.version, row.recognizable) == expected


def test_a_save_of_a_label_cleared_meanwhile_is_a_409_with_no_current_answer(admin_user):
    """Another admin cleared the consensus this admin had open at version 1: refused, current version 0."""
    unit = UnitFactory()
    unit_consensus_save(unit=unit, admin=admin_user, version=0, recognizable="yes")
    unit_consensus_clear(unit=unit, admin=UserFactory(groups=["admin"]))
    with pytest.raises(ApplicationError) as refused:
        unit_consensus_save(unit=unit, admin=admin_user, version=1, recognizable="no")
    assert refused.value.status == 409
    assert refused.value.extra == {"version": 0, "current": None}
    assert "you had version 1, it is now version 0" in refused.value.message
    assert not UnitConsensus.objects.filter(unit=unit).exists()


def test_a_409_names_whoever_made_this_row_s_version_not_another_row_of_the_same_kind(expert_user):
    """Another expert's annotation of another unit, logged first with the same version: not this row's author."""
    other = UserFactory(groups=["expert"], username="other-expert")
    unit_annotation_save(unit=UnitFactory(), expert=other, version=0, recognizable="no")
    unit = UnitFactory()
    unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    with pytest.raises(ApplicationError) as refused:
        unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
    assert "changed in another tab or window since you opened it" in refused.value.message


def test_a_blind_expert_is_told_no_other_name_in_a_409(expert_user):
    """Should anyone else have made the current version, a blind expert learns neither the name nor more."""
    admin, other = UserFactory(groups=["admin"]), UserFactory(groups=["expert"], username="other-expert")
    unit = UnitFactory()
    saved = unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="yes")
    change = AnnotationChange.objects.get(target_id=saved.pk)
    for author, said in ((other, "by someone else"), (admin, "by an admin")):
        change.user = author
        change.save()
        with pytest.raises(ApplicationError) as refused:
            unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
        assert f"changed {said} since you opened it" in refused.value.message
        assert author.username not in refused.value.message
    # On a dataset that is not blind, experts see each other's names.
    dataset = unit.model.dataset
    dataset.annotation_blind = False
    dataset.save()
    change.user = other
    change.save()
    with pytest.raises(ApplicationError) as refused:
        unit_annotation_save(unit=unit, expert=expert_user, version=0, recognizable="no")
    assert "changed by other-expert since you opened it" in refused.value.message
