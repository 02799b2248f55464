"""Two first saves of the same label at the same moment, on two threads with their own database connections:
both read "no label yet", both INSERT, and the loser gets the 409 of ``save_versioned``'s IntegrityError path
(not a 500), for unit annotations, unit consensus and fracture labels.

PostgreSQL only: SQLite's IMMEDIATE transactions serialise writers from their first statement, so the second
save there always sees the first one's row before it inserts and the race cannot happen (CI runs this on
its PostgreSQL pass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from annotator.errors import ApplicationError
from annotator.models import AnnotationChange, Dataset, FractureDescriptor, UnitAnnotation, UnitConsensus
from annotator.services.annotations import unit_annotation_save, unit_consensus_save
from annotator.services.fractures import fracture_descriptor_save
from tests.factories import DatasetFactory, ImageFactory, UnitFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
        reason="SQLite serialises writers (BEGIN IMMEDIATE): two first saves cannot both miss each other's row",
    ),
]

RACE_TIMEOUT = 20  # seconds a thread waits at the barrier: a broken race fails instead of hanging


def _race(table: str, saves: list[Callable[[], Any]]) -> list[Any]:
    """Run each save on its own thread (own connection); every thread waits just before its INSERT into
    ``table`` until all have got there, so each has read "no row" and their inserts collide.

    Returns each save's result, or the exception it raised."""
    barrier = threading.Barrier(len(saves), timeout=RACE_TIMEOUT)
    results: list[Any] = [None] * len(saves)

    def hold_the_insert(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith(f'INSERT INTO "{table}"'):
            barrier.wait()
        return execute(sql, params, many, context)

    def run(index: int) -> None:
        try:
            with connection.execute_wrapper(hold_the_insert):
                results[index] = saves[index]()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(saves))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * RACE_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a save is stuck"
    return results


def _one_saved_one_refused(results: list[Any], model: type, what: str) -> tuple[Any, ApplicationError]:
    saved = [result for result in results if isinstance(result, model)]
    refused = [result for result in results if isinstance(result, ApplicationError)]
    assert (len(saved), len(refused)) == (1, 1), results  # an IntegrityError here is the 500 this guards against
    error = refused[0]
    assert error.status == 409
    assert f"This {what} was changed" in error.message and "version 0" in error.message
    assert error.extra["version"] == 1  # the winner's row, as a reload would show it
    assert error.extra["current"] is not None
    assert model.objects.count() == 1 and AnnotationChange.objects.count() == 1
    return saved[0], error


def test_two_tabs_saving_a_first_answer_at_once_keep_one_and_refuse_the_other_with_409():
    unit = UnitFactory()
    expert = UserFactory(username="tabs-expert", groups=["expert"])

    def save(notes: str) -> Callable[[], UnitAnnotation]:
        return lambda: unit_annotation_save(unit=unit, expert=expert, version=0, recognizable="yes", notes=notes)

    results = _race(UnitAnnotation._meta.db_table, [save("tab A"), save("tab B")])
    saved, error = _one_saved_one_refused(results, UnitAnnotation, "annotation")
    assert error.extra["current"]["notes"] == saved.notes
    assert "in another tab or window" in error.message
    assert UnitAnnotation.objects.get().notes == saved.notes


def test_two_admins_setting_a_first_consensus_at_once_keep_one_and_refuse_the_other_with_409():
    unit = UnitFactory()
    admins = [UserFactory(username=f"admin-{n}", groups=["admin"], is_staff=True) for n in (1, 2)]

    def save(admin: Any, description: str) -> Callable[[], UnitConsensus]:
        return lambda: unit_consensus_save(
            unit=unit, admin=admin, version=0, recognizable="yes", description=description
        )

    results = _race(UnitConsensus._meta.db_table, [save(admins[0], "by one"), save(admins[1], "by two")])
    saved, error = _one_saved_one_refused(results, UnitConsensus, "consensus")
    assert error.extra["current"]["description"] == saved.description
    assert f"by {saved.set_by}" in error.message  # admins see who set it
    assert UnitConsensus.objects.get().description == saved.description


def test_two_tabs_saving_a_first_fracture_label_at_once_keep_one_and_refuse_the_other_with_409():
    dataset = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    image = ImageFactory(dataset=dataset, label="fracture")
    expert = UserFactory(username="hip-expert", groups=["expert"])
    fracture = {
        "fracture": True,
        "displacement": "undisplaced",
        "comminuted": False,
        "impacted": True,
        "location": "subcapital",
        "avulsed_fragment": False,
    }

    def save(values: dict[str, Any]) -> Callable[[], FractureDescriptor]:
        return lambda: fracture_descriptor_save(image=image, expert=expert, version=0, **values)

    results = _race(FractureDescriptor._meta.db_table, [save({**fracture, "fracture": False}), save(fracture)])
    saved, error = _one_saved_one_refused(results, FractureDescriptor, "fracture label")
    assert error.extra["current"]["sentence"] == saved.sentence
    assert FractureDescriptor.objects.get().fracture == saved.fracture
