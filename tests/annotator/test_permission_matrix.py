"""The permission and blindness matrix (issue 12): every page and API operation, as anonymous, researcher,
expert and admin, against the declared table of access_matrix.py, and a blind expert against every place
another expert's answer or name, or the ground truth of what they label, could appear.

The table cannot fall behind the code: the routes come from the URL conf and the operations from the schema
the API serves, and a route or operation without a row fails, as does a row for a route that is gone. The
blindness scan is generated from the same table: every response a blind expert gets, whatever the route,
the method and the status (a 409's message included), is searched for markers planted in another expert's
answers, labels and name and in the truth of the hip images and of the (blind) mammograms; each marker is
first shown to reach an admin, so its absence for the expert means something. Once an admin opens the
mammogram dataset the same expert reads every mammogram marker, and still no hip truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from annotator.files import media_path, write_png_atomic
from annotator.models import Concept, Dataset, Explanation, Finding, Image, Unit
from annotator.permissions import truth_hidden_q, user_sees_truth
from annotator.services.annotations import unit_annotation_save, unit_consensus_save
from annotator.services.fractures import fracture_descriptor_save
from annotator.services.reader_studies import study_rating_save
from annotator.services.uploads import upload_create
from tests.annotator.access_matrix import MATRIX, ROLES, Probe
from tests.annotator.reader_study_world import planted_study
from tests.factories import (
    DatasetFactory,
    FindingFactory,
    ImageFactory,
    JobFactory,
    UnitFactory,
    UserFactory,
    client_for,
    mined_unit,
)

pytestmark = pytest.mark.django_db

USERS = {"anonymous": None, "researcher": "researcher_user", "expert": "expert_user", "admin": "admin_user"}
API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SCHEMA_ROUTES = ("api/schema/", "api/docs/")  # the API routes its schema leaves out: the schema and its page

# What a blind expert must never read: another expert's name and answers, the truth of the hip images they
# label, and the truth of the mammograms while their dataset is blind (permissions' truth rule).
OTHER_EXPERT = "zz-other-expert-7q"
OTHER_ANSWER = "zz-other-answer-desc-3k"  # the other expert's description of a unit: its majority name too
OTHER_NOTES = "zz-other-notes-8w"
TRUTH_LABEL = "zz-truth-label-5m"  # not one of the dataset's classes, so no class list can give it away
TRUTH_REPORT = "zz-truth-report-2h"
TRUTH_DISPLACEMENT = "zz-truth-displacement-6v"
TRUTH_LOCATION = "zz-truth-location-4c"
TRUTH_FINDING = "zz-truth-finding-9p"
OTHER_LABEL_SENTENCE = (  # the other expert's hip labels, as their sentence
    "There is a severely displaced, comminuted, impacted fracture of the subtrochanteric region of the femur "
    "with an avulsed fragment."
)
# The mammograms' truth. Class names are in every class list, so an image's label is planted as a value of
# its own; a finding's pathology and concept are words every page has (the lexicon, the legend), so their
# markers are the shapes only a finding gives them: the API's finding object and the image page's list.
MAMMO_LABEL = "zz-mammo-label-4r"
MAMMO_REPORT = "zz-mammo-report-1x"  # the image's metadata
MAMMO_FINDING = "zz-mammo-finding-desc-6t"
MAMMO_LESION = "zz-mammo-lesion-2g"
MAMMO_CONCEPT = "zz_mammo.concept_5u"  # in the lexicon for everyone; a finding naming it is the truth
MAMMO_CONCEPT_TERM = "zz-mammo-term-3b"
MAMMO_PATCH_LABEL = "zz-mammo-patch-label-9e"  # per-label patch counts in the patch job's result
FINDING_PATHOLOGY = '"pathology":"malignant"'  # the mammogram's finding in the API (the hip one is benign)
HIP_PATHOLOGY = '"pathology":"benign"'
FINDING_CONCEPT_JSON = f'"concepts":["{MAMMO_CONCEPT}"]'
FINDING_CONCEPT_PAGE = f"\u00b7 {MAMMO_CONCEPT_TERM}</li>"
PATCH_LABEL = "\u00b7 patch label "  # the survey's caption of a top patch, its label (a finding's pathology)
OTHERS = (OTHER_EXPERT, OTHER_ANSWER, OTHER_NOTES, OTHER_LABEL_SENTENCE)
HIP_TRUTH = (TRUTH_LABEL, TRUTH_REPORT, TRUTH_DISPLACEMENT, TRUTH_LOCATION, TRUTH_FINDING, HIP_PATHOLOGY)
MAMMO_TRUTH = (
    MAMMO_LABEL,
    MAMMO_REPORT,
    MAMMO_FINDING,
    MAMMO_LESION,
    MAMMO_PATCH_LABEL,
    FINDING_PATHOLOGY,
    FINDING_CONCEPT_JSON,
    FINDING_CONCEPT_PAGE,
    PATCH_LABEL,
)


def markers(world: dict[str, Any], *groups: tuple[str, ...]) -> tuple[str, ...]:
    """The markers of ``groups``; with MAMMO_TRUTH also the world's mammogram outline and mask names and
    the image's deep-zoom outline URL, which only a user who sees the truth is given."""
    found = tuple(marker for group in groups for marker in group)
    if MAMMO_TRUTH in groups:
        found += (world["overlay"], world["mask"], f"/images/{world['image']}/outlines.png")
    return found


# -- the routes and operations the code has ---------------------------------------------------------------


def page_and_api_routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(route, its view callback) for every URL pattern, nested includes walked; the Django admin as one route
    (its own routes are its business: one row checks that it is for staff)."""
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route == "admin/":
                yield route, None
            else:
                yield from page_and_api_routes(entry.url_patterns, route)
        else:
            yield route, entry.callback


def _schema_key(path: str) -> str:
    """A route or a schema path with its parameters blanked: `api/units/<int:pk>/` and `/api/units/{id}/` meet."""
    return re.sub(r"<[^>]+>|{[^}]+}", "{}", path).lstrip("/")


def required_rows(schema: dict[str, Any]) -> set[tuple[str, str]]:
    """The (route, method) rows the table must have: GET for every page route, every operation the schema
    documents for an API route (GET for the schema's own routes, which it leaves out)."""
    operations = _documented(schema)
    rows = set()
    for route, _ in page_and_api_routes(get_resolver().url_patterns):
        methods = operations.get(_schema_key(route), {"GET"}) if route.startswith("api/") else {"GET"}
        rows |= {(route, method) for method in methods}
    return rows


def _documented(schema: dict[str, Any]) -> dict[str, set[str]]:
    """Route key -> the HTTP methods the schema documents for it."""
    return {
        _schema_key(path): {method.upper() for method in ops if method.upper() in API_METHODS}
        for path, ops in schema["paths"].items()
    }


def implemented_methods(callback: Any) -> set[str]:
    """The HTTP methods an API view class answers (its handlers), as the schema should document them."""
    view = callback.cls
    return {method for method in API_METHODS if hasattr(view, method.lower())}


@pytest.fixture
def schema(admin_user) -> dict[str, Any]:
    response = client_for(admin_user).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_every_route_and_operation_has_a_row_and_every_row_a_route(schema):
    required = required_rows(schema)
    routes = {route for route, _ in page_and_api_routes(get_resolver().url_patterns)}
    missing = sorted(required - set(MATRIX))
    assert not missing, f"add a row to tests/annotator/access_matrix.py for each of: {missing}"
    gone = sorted(key for key in MATRIX if key[0] not in routes)
    assert not gone, f"rows for routes that no longer exist: {gone}"
    api_extra = sorted(key for key in set(MATRIX) - required if key[0].startswith("api/"))
    assert not api_extra, f"rows for API operations the schema does not document: {api_extra}"
    assert len(routes) > 50 and len(required) > 50


def test_the_schema_documents_every_api_view_and_every_method_it_answers(schema):
    documented = _documented(schema)
    undocumented, wrong = [], {}
    for route, callback in page_and_api_routes(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        methods = documented.get(_schema_key(route))
        if methods is None:
            undocumented.append(route)
        elif implemented_methods(callback) != methods:
            wrong[route] = (implemented_methods(callback), methods)
    assert tuple(undocumented) == SCHEMA_ROUTES  # the schema leaves only itself and its page out
    assert not wrong


def test_every_probe_requests_the_route_of_its_row():
    for (route, _), probes in MATRIX.items():
        for probe in probes:
            path = probe.url.split("?")[0].format_map(_AnyId())
            assert resolve(path).route == route, (probe.url, route)
            assert len(probe.expect.split()) == len(ROLES), probe


class _AnyId(dict):
    def __missing__(self, key: str) -> str:
        return "images/x.png" if key == "media" else "1"


# -- the world every probe runs on ---------------------------------------------------------------------------


@pytest.fixture
def world(admin_user, expert_user, researcher_user) -> dict[str, Any]:
    """One of everything a route names, on blind datasets, with the markers planted. Ids by the names the
    table's URL templates use."""
    other = UserFactory(username=OTHER_EXPERT, groups=["expert"])
    unit = mined_unit(n_top=4, n_images=2)
    trained, mammo = unit.model, unit.model.dataset
    unit2 = UnitFactory(
        model=trained, selected_for="benign", selection_rank=1, suggested_concept=unit.suggested_concept
    )
    answer = [{"description": OTHER_ANSWER, "concept": "", "association": "malignant"}]
    for each in (unit, unit2):
        unit_annotation_save(
            unit=each, expert=other, version=0, recognizable="yes", phenomena=answer, notes=OTHER_NOTES
        )
    unit_annotation_save(unit=unit2, expert=expert_user, version=0, recognizable="unsure", notes="my own note")
    unit_consensus_save(unit=unit2, admin=admin_user, version=0, recognizable="unsure")
    image = mammo.images.order_by("pk").first()
    outlines = np.zeros((image.height, image.width, 4), dtype=np.uint8)
    outlines[5:20, 5:20] = (255, 0, 0, 255)
    image.label, image.metadata = MAMMO_LABEL, {"report": MAMMO_REPORT}
    image.overlay = write_png_atomic("overlays/zz-mammo-outlines-7k.png", outlines)
    image.save()
    concept = Concept.objects.create(
        code=MAMMO_CONCEPT, category="zz", category_label="zz", term=MAMMO_CONCEPT_TERM, association="suspicious"
    )
    mask = np.zeros((image.height, image.width), dtype=bool)
    mask[5:20, 5:20] = True
    finding = FindingFactory(
        image=image, pathology="malignant", description=MAMMO_FINDING, lesion_type=MAMMO_LESION, mask_array=mask
    )
    finding.concepts.add(concept)
    upload = upload_create(owner=expert_user, uploaded=_png_file(image.file.name))
    for target in ({"image": image}, {"upload": upload}):
        _explanation(trained, [unit, unit2], **target)

    hips = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    truth = {"fracture": True, "displacement": TRUTH_DISPLACEMENT, "location": TRUTH_LOCATION, "report": TRUTH_REPORT}
    hip, hip2 = (ImageFactory(dataset=hips, label=TRUTH_LABEL, metadata=truth, split="test") for _ in range(2))
    FindingFactory(image=hip, pathology="benign", description=TRUTH_FINDING)
    severe = {
        "fracture": True,
        "displacement": "severely displaced",
        "comminuted": True,
        "impacted": True,
        "location": "subtrochanteric",
        "avulsed_fragment": True,
    }
    label_other = fracture_descriptor_save(image=hip, expert=other, version=0, **severe)
    assert label_other.sentence == OTHER_LABEL_SENTENCE
    fracture_descriptor_save(image=hip2, expert=other, version=0, **severe)
    label_mine = fracture_descriptor_save(image=hip2, expert=expert_user, version=0, fracture=False)
    study = planted_study(dataset=hips, classifier=trained, readers=[expert_user, other], images=[hip, hip2])
    for item in study.items.exclude(arm="comparison"):  # the pairs hide from readers while the hips are blind
        study_rating_save(study=study, key=item.key, reader=other, score=4)
    return {
        "mammo": mammo.pk,
        "model": trained.pk,
        "unit": unit.pk,
        "unit2": unit2.pk,
        "image": image.pk,
        "media": image.file.name,
        "overlay": image.overlay.name,
        "mask": finding.mask.name,
        "upload": upload.pk,
        "job": JobFactory(dataset=mammo, result={"patches": 3, "by_split": {"test": {MAMMO_PATCH_LABEL: 3}}}).pk,
        "import_job": JobFactory(kind="import_dataset", status="failed", params={"name": "New"}, dataset=None).pk,
        "hips": hips.pk,
        "hip": hip.pk,
        "hip2": hip2.pk,
        "label_other": label_other.pk,
        "label_mine": label_mine.pk,
        "study": study.pk,
        "study_item": study.items.exclude(arm="comparison").first().key,
    }


def _png_file(name: str) -> SimpleUploadedFile:
    """An upload of the PNG stored as ``name``: a real image file, fresh for each request."""
    return SimpleUploadedFile("scan.png", media_path(name).read_bytes(), content_type="image/png")


def _explanation(trained: Any, units: list[Unit], **target: Any) -> Explanation:
    """A stored explanation as a batch job leaves it: its units named as everyone sees them then (the other
    expert's answer is their majority), so the viewer's own names must replace them."""
    map_name = target["image"].file.name if "image" in target else target["upload"].file.name
    return Explanation.objects.create(
        model=trained,
        method="cam",
        decided="malignant",
        scores={"normal": 0.1, "benign": 0.2, "malignant": 0.7},
        units=[
            {
                "unit": u.pk,
                "channel": u.channel,
                "influence": 1.0 - i / 10,
                "max_activation": 5.0,
                "label": OTHER_ANSWER,
                "source": "experts",
                "concept": "",
                "map": map_name,
            }
            for i, u in enumerate(units)
        ],
        text=f"Malignant (0.70). Most influential: unit layer4:{units[0].channel} — {OTHER_ANSWER}.",
        class_map=map_name,
        map_size=[64, 48],
        **target,
    )


# -- requesting ------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    method: str
    url: str
    status: int
    location: str
    body: bytes


def _outcome(answer: Answer) -> str:
    if answer.status == 302 and answer.location.startswith("/accounts/login/?next="):
        return "login"
    return str(answer.status)


def _is_operation(route: str) -> bool:
    return route.startswith("api/") and route not in SCHEMA_ROUTES


def _json_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        return ""


def _body(template: dict[str, Any] | None, ids: dict[str, Any]) -> dict[str, Any] | None:
    if template is None:
        return None
    body = {}
    for key, value in template.items():
        if value == "{png}":
            body[key] = _png_file(ids["media"])
        elif isinstance(value, str) and value.startswith("{"):
            body[key] = ids[value.strip("{}")]
        else:
            body[key] = value
    return body


def request_as(user: Any, method: str, probe: Probe, ids: dict[str, Any]) -> Answer:
    """One request on a fresh client, its writes rolled back and the throttle counters cleared, so every
    request finds the world as the fixture made it whatever ran before."""
    url = probe.url.format_map(ids)
    body = _body(probe.body, ids)
    multipart = body is not None and any(isinstance(value, SimpleUploadedFile) for value in body.values())
    format_ = "json" if url.startswith("/api/") and not multipart else "multipart"
    client = client_for(user)
    cache.clear()
    with transaction.atomic():
        call = getattr(client, method.lower())
        response = call(url) if method == "GET" else call(url, body, format=format_)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        transaction.set_rollback(True)
    return Answer(method, url, response.status_code, response.get("Location", ""), content)


def every_answer(user: Any, ids: dict[str, Any]) -> Iterator[tuple[tuple[str, str], Probe, Answer]]:
    for (route, method), probes in MATRIX.items():
        for probe in probes:
            yield (route, method), probe, request_as(user, method, probe, ids)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_gets_what_the_table_says_on_every_route(request, role, world):
    user = request.getfixturevalue(USERS[role]) if USERS[role] else None
    column = ROLES.index(role)
    wrong = []
    for key, probe, answer in every_answer(user, world):
        expected = probe.expect.split()[column]
        if _outcome(answer) != expected:
            wrong.append(
                f"{answer.method} {answer.url}: {_outcome(answer)}, the table says {expected}: {answer.body[:160]!r}"
            )
        elif _is_operation(key[0]) and answer.status >= 400 and not _json_message(answer.body):
            # Every operation's error is JSON with a message (the schema's YAML and its HTML page aside).
            wrong.append(f"{answer.method} {answer.url}: {answer.status} without a JSON message: {answer.body[:160]!r}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_every_api_method_the_schema_does_not_document_is_refused(admin_user, schema):
    """DRF answers a method the view has no handler for before it looks anything up: any ids do."""
    documented = _documented(schema)
    probes = {route: probes[0] for (route, _), probes in MATRIX.items() if route.startswith("api/")}
    answered = []
    for route, probe in sorted(probes.items()):
        for method in sorted(set(API_METHODS) - documented.get(_schema_key(route), {"GET"})):
            answer = request_as(admin_user, method, probe._replace(body=None), _AnyId())
            if answer.status != 405:
                answered.append(f"{method} {answer.url}: {answer.status}")
    assert not answered


def _reads(user: Any, world: dict[str, Any], watched: tuple[str, ...]) -> tuple[set[str], list[str], set[Any]]:
    """(the markers of ``watched`` some answer to ``user`` carries, where each was, the rows read with 200)."""
    seen, where, read = set(), [], set()
    for key, _, answer in every_answer(user, world):
        if answer.status == 200:
            read.add(key)
        found = [marker for marker in watched if marker.encode() in answer.body]
        if found:
            seen.update(found)
            where.append(f"{answer.method} {answer.url} ({answer.status}): {found}")
    return seen, where, read


def test_a_blind_expert_never_reads_another_experts_answer_or_name_or_the_truth(expert_user, admin_user, world):
    watched = markers(world, OTHERS, HIP_TRUTH, MAMMO_TRUTH)
    seen_by_admin, _, _ = _reads(admin_user, world, watched)
    unreachable = [marker for marker in watched if marker not in seen_by_admin]
    assert not unreachable, f"markers no route shows even an admin (the scan would prove nothing): {unreachable}"
    _, leaks, read = _reads(expert_user, world, watched)
    assert not leaks, "a blind expert reads what they must not:\n" + "\n".join(leaks)
    # The scan covered every route the table says the expert reads, not a hand-picked few.
    expert = ROLES.index("expert")
    assert read == {key for key, probes in MATRIX.items() if any(p.expect.split()[expert] == "200" for p in probes)}


def test_once_the_mammograms_are_opened_the_expert_reads_their_truth_and_still_no_hip_truth(expert_user, world):
    Dataset.objects.filter(pk=world["mammo"]).update(annotation_blind=False)
    mammo_truth = markers(world, MAMMO_TRUTH)
    seen, where, _ = _reads(expert_user, world, mammo_truth + HIP_TRUTH + (OTHER_LABEL_SENTENCE,))
    assert not [marker for marker in mammo_truth if marker not in seen], "the opened mammograms' truth is hidden"
    hidden = (*HIP_TRUTH, OTHER_LABEL_SENTENCE)  # the hip dataset is still blind, and hip truth always hidden
    assert not seen & set(hidden), "\n".join(line for line in where if any(m in line for m in hidden))


@pytest.mark.parametrize("kind", Dataset.Kind.values)
@pytest.mark.parametrize("blind", [True, False])
def test_the_truth_rule_of_one_dataset_and_its_queryset_filter_agree(
    kind, blind, expert_user, researcher_user, admin_user
):
    image = ImageFactory(dataset=DatasetFactory(kind=kind, annotation_blind=blind))
    finding = FindingFactory(image=image)
    expert_sees = kind == Dataset.Kind.MAMMOGRAM and not blind  # hip truth: hidden from experts, open or not
    for user, sees in (
        (expert_user, expert_sees),
        (UserFactory(), expert_sees),
        (researcher_user, True),
        (admin_user, True),
    ):
        assert user_sees_truth(user, image.dataset) == sees
        images = Image.objects.filter(pk=image.pk)
        assert images.exclude(truth_hidden_q(user)).exists() == sees != images.filter(truth_hidden_q(user)).exists()
        findings = Finding.objects.filter(pk=finding.pk).exclude(truth_hidden_q(user, dataset="image__dataset"))
        assert findings.exists() == sees
