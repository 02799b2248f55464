"""Fracture selectors: the queue's order and progress, blindness, history visibility, truth parsing,
and the export rows read in chunks."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator.models import Dataset
from annotator.selectors import fractures as selectors
from annotator.services.fractures import fracture_descriptor_save
from tests.factories import DatasetFactory, ImageFactory, UserFactory

pytestmark = pytest.mark.django_db

FRACTURE = {"fracture": True, "displacement": "undisplaced", "location": "transcervical"}


@pytest.fixture
def hip_dataset():
    return DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])


@pytest.fixture
def images(hip_dataset):
    return [ImageFactory(dataset=hip_dataset, source_name=f"hip-{n}.png") for n in range(5)]


@pytest.fixture
def second_expert(db):
    return UserFactory(username="olga-expert", groups=["expert"])


def label(image, user, **values):
    return fracture_descriptor_save(image=image, expert=user, version=0, **(values or {"fracture": False}))


def ids(queryset):
    return list(queryset.values_list("id", flat=True))


def test_queue_is_my_unlabelled_images_in_id_order(hip_dataset, images, expert_user, second_expert):
    label(images[1], expert_user)
    label(images[3], expert_user, **FRACTURE)
    label(images[0], second_expert)  # somebody else's label does not take it off my queue

    assert ids(selectors.fracture_queue(dataset=hip_dataset, user=expert_user)) == [
        images[0].pk,
        images[2].pk,
        images[4].pk,
    ]
    assert ids(selectors.fracture_queue(dataset=hip_dataset, user=second_expert)) == [i.pk for i in images[1:]]
    assert selectors.fracture_progress(dataset=hip_dataset, user=expert_user) == {"total": 5, "mine": 2, "everyone": 3}
    assert selectors.fracture_progress(dataset=hip_dataset, user=second_expert) == {
        "total": 5,
        "mine": 1,
        "everyone": 3,
    }


def test_next_image_goes_forward_then_wraps_and_never_returns_the_current_one(hip_dataset, images, expert_user):
    label(images[1], expert_user)
    nxt = selectors.fracture_next_image
    assert nxt(dataset=hip_dataset, user=expert_user) == images[0].pk
    assert nxt(dataset=hip_dataset, user=expert_user, after=images[0].pk) == images[2].pk
    assert nxt(dataset=hip_dataset, user=expert_user, after=images[1].pk) == images[2].pk
    assert nxt(dataset=hip_dataset, user=expert_user, after=images[4].pk) == images[0].pk  # wraps round
    for image in images:
        if image != images[1]:
            label(image, expert_user)
    assert nxt(dataset=hip_dataset, user=expert_user) is None
    assert nxt(dataset=hip_dataset, user=expert_user, after=images[2].pk) is None


def test_the_only_unlabelled_image_is_not_its_own_next(hip_dataset, images, expert_user):
    for image in images[1:]:
        label(image, expert_user)
    assert selectors.fracture_next_image(dataset=hip_dataset, user=expert_user, after=images[0].pk) is None


def test_neighbours_follow_the_dataset_order(hip_dataset, images):
    other = ImageFactory()  # another dataset's image in between never shows up
    assert selectors.fracture_image_neighbours(image=images[0]) == {"previous": None, "next": images[1].pk}
    assert selectors.fracture_image_neighbours(image=images[2]) == {"previous": images[1].pk, "next": images[3].pk}
    assert selectors.fracture_image_neighbours(image=images[4]) == {"previous": images[3].pk, "next": None}
    assert other.pk > images[4].pk


@pytest.mark.parametrize(
    ("blind", "role", "sees"),
    [
        (True, "expert_user", ["eve-expert"]),
        (True, "admin_user", ["eve-expert", "olga-expert"]),
        (True, "researcher_user", ["eve-expert", "olga-expert"]),
        (False, "expert_user", ["eve-expert", "olga-expert"]),
    ],
)
def test_blind_datasets_show_experts_only_their_own_labels(
    hip_dataset, images, second_expert, request, blind, role, sees
):
    hip_dataset.annotation_blind = blind
    hip_dataset.save()
    expert = request.getfixturevalue("expert_user")
    label(images[0], expert)
    label(images[0], second_expert, **FRACTURE)
    user = request.getfixturevalue(role)

    visible = selectors.fracture_labels_visible(image=images[0], user=user)
    assert [row.expert.username for row in visible] == sees
    history = selectors.fracture_history(image=images[0], user=user)
    assert sorted({change.user.username for change in history}) == sees
    exported = list(selectors.fracture_export_rows(dataset=hip_dataset, user=user))
    assert [row["expert"] for row in exported] == sees


def test_history_is_newest_first_with_before_and_after(hip_dataset, images, expert_user):
    label(images[0], expert_user)
    fracture_descriptor_save(image=images[0], expert=expert_user, version=1, **FRACTURE)
    history = list(selectors.fracture_history(image=images[0], user=expert_user))
    assert [change.version for change in history] == [2, 1]
    assert history[0].before["fracture"] is False and history[0].after["fracture"] is True


@pytest.mark.parametrize(
    ("metadata", "truth"),
    [
        ({}, {}),
        ({"age": 81}, {}),
        (
            {
                "fracture": "True",
                "displacement": "mildly displaced",
                "comminuted": 0,
                "impacted": "false",
                "location": "basicervical",
                "avulsed_fragment": 1,
                "report": "There is a mildly displaced fracture.",
            },
            {
                "fracture": True,
                "displacement": "mildly displaced",
                "comminuted": False,
                "impacted": False,
                "location": "basicervical",
                "avulsed_fragment": True,
                "report": "There is a mildly displaced fracture.",
            },
        ),
        ({"fracture": False, "displacement": None}, {"fracture": False, "displacement": ""}),
    ],
)
def test_truth_reads_manifest_cells_as_json_values(metadata, truth):
    assert selectors.fracture_truth(metadata) == truth


def test_export_rows_come_in_image_order_across_chunks_with_truth(hip_dataset, expert_user, second_expert, admin_user):
    images = [
        ImageFactory(
            dataset=hip_dataset,
            patient_id=f"P{n}",
            split="test" if n % 2 else "train",
            metadata={
                "fracture": "1",
                "displacement": "undisplaced",
                "location": "transcervical",
                "report": f"truth {n}",
            },
        )
        for n in range(7)
    ]
    for image in reversed(images):  # saved out of order: the export still sorts by image
        label(image, second_expert, **FRACTURE)
        label(image, expert_user)

    with CaptureQueriesContext(connection) as queries:
        rows = list(selectors.fracture_export_rows(dataset=hip_dataset, user=admin_user, chunk=3))
    # 14 rows in chunks of 3: five page queries (3+3+3+3+2), each reading only its chunk.
    assert len(rows) == 14
    assert len([q for q in queries.captured_queries if "annotator_fracturedescriptor" in q["sql"]]) == 5
    # Within an image, labels keep the order they were made in (olga labelled each image first).
    assert [(row["image_id"], row["expert"]) for row in rows] == [
        (image.pk, name) for image in images for name in ("olga-expert", "eve-expert")
    ]
    first = rows[0]
    assert set(first) == set(selectors.EXPORT_COLUMNS)
    assert (first["source_name"], first["patient_id"], first["split"]) == (images[0].source_name, "P0", "train")
    assert (first["fracture"], first["displacement"], first["location"], first["version"]) == (
        True,
        "undisplaced",
        "transcervical",
        1,
    )
    assert first["sentence"] == "There is an undisplaced fracture of the transcervical neck of femur."
    assert (first["truth_fracture"], first["truth_location"], first["truth_report"]) == (
        True,
        "transcervical",
        "truth 0",
    )
    assert first["truth_comminuted"] is None  # not in the metadata: unknown, not False
