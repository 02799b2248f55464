"""Who gets what, route by route: the declared table test_permission_matrix.py checks against the URL conf and
the API schema (a route or operation without a row fails, and so does a row whose route is gone) and then
requests, for every role.

A key is (route, method): the route as ``ResolverMatch.route`` spells it (``django.urls.resolve(path).route``)
and the HTTP method; the Django admin is one row, its prefix ``admin/``. Every page route needs a GET row
(405 where the page takes only POST); every API route needs a row for each method the schema documents.

A row holds one or more probes, each a request on the objects ``test_permission_matrix.world`` makes: a URL
template over the world's ids (``{unit}``, ``{hip}``, ...) and the outcome for anonymous, researcher, expert
and admin, in that order. An outcome is a status code, or ``login`` (a redirect to the sign-in page).
``body`` is sent as JSON to the API and as a form to pages; a value ``"{png}"`` is a freshly uploaded PNG file.

The world (see there): every dataset is blind, so the expert column is a blind expert's, who sees neither
the hip images' truth nor the mammograms' (``overlay`` / ``mask``: the mammogram's finding outlines and mask). ``unit`` was answered
by another expert only, ``unit2`` by the expert too; ``hip`` was labelled by another expert only, ``hip2`` by
the expert too; ``label_other`` / ``label_mine`` are those fracture labels; the upload is the expert's.
``study`` is a reader study of the hip images read by the expert and the other expert (who rated every
item they may see: the pairs hide while the hips are blind), ``study_item`` one of its single-score items.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["MATRIX", "ROLES", "Probe"]

ROLES = ("anonymous", "researcher", "expert", "admin")


class Probe(NamedTuple):
    url: str
    expect: str  # four outcomes, one per role of ROLES: "login 200 403 200"
    body: dict[str, Any] | None = None


P = Probe
EVERY_ROLE_READS_PAGE = "login 200 200 200"
EVERY_ROLE_READS_API = "403 200 200 200"
ADMINS_ONLY_PAGE = "login 403 403 302"
ADMINS_ONLY_API = "403 403 403 200"
ANNOTATORS_API = "403 403 200 200"
NOT_BLIND_EXPERTS_PAGE = "login 200 403 200"  # every expert's answers or the truth: admins and researchers
NOT_BLIND_EXPERTS_API = "403 200 403 200"
OWNER_AND_ADMINS_PAGE = "login 404 200 200"  # the expert's upload: anyone else is told it does not exist
OWNER_AND_ADMINS_API = "403 404 200 200"
POST_ONLY_PAGE = "login 405 405 405"
READER_ONLY_API = "403 403 200 403"  # a reader study's own readers: the expert reads {study}
TILE = "deepzoom_files/0/0_0.jpg"

MATRIX: dict[tuple[str, str], tuple[Probe, ...]] = {
    # -- sign-in, the Django admin, health -----------------------------------------------------------------
    ("accounts/login/", "GET"): (P("/accounts/login/", "200 200 200 200"),),
    ("accounts/login/", "POST"): (P("/accounts/login/", "200 200 200 200", {"username": "x", "password": "y"}),),
    ("accounts/logout/", "GET"): (P("/accounts/logout/", POST_ONLY_PAGE),),
    ("accounts/logout/", "POST"): (P("/accounts/logout/", "login 302 302 302"),),
    ("admin/", "GET"): (P("/admin/", "login 302 302 200"),),  # non-staff go to the admin's own sign-in
    ("healthz", "GET"): (P("/healthz", "200 200 200 200"),),
    # -- core pages ---------------------------------------------------------------------------------------
    ("", "GET"): (P("/", EVERY_ROLE_READS_PAGE),),
    ("datasets/<int:pk>/", "GET"): (
        P("/datasets/{mammo}/", EVERY_ROLE_READS_PAGE),
        P("/datasets/{hips}/", EVERY_ROLE_READS_PAGE),
    ),
    ("datasets/<int:pk>/extract-patches/", "GET"): (P("/datasets/{mammo}/extract-patches/", POST_ONLY_PAGE),),
    ("datasets/<int:pk>/extract-patches/", "POST"): (P("/datasets/{mammo}/extract-patches/", ADMINS_ONLY_PAGE),),
    ("datasets/import/", "GET"): (P("/datasets/import/", "login 403 403 200"),),
    # The world has no IMPORT_ROOTS: an admin's folder import is refused as off (400), after the role check.
    ("datasets/import/", "POST"): (
        P("/datasets/import/", "login 403 403 400", {"name": "x", "seed": 0, "source": "folder", "folder": "cases"}),
    ),
    ("datasets/import/<int:pk>/", "GET"): (P("/datasets/import/{import_job}/", "login 403 403 200"),),
    ("jobs/new/", "GET"): (P("/jobs/new/", "login 403 403 200"),),
    ("jobs/new/", "POST"): (P("/jobs/new/", ADMINS_ONLY_PAGE, {"kind": "extract_patches", "dataset": "{mammo}"}),),
    ("jobs/<int:pk>/", "GET"): (P("/jobs/{job}/", EVERY_ROLE_READS_PAGE),),
    ("jobs/<int:pk>/cancel/", "GET"): (P("/jobs/{job}/cancel/", POST_ONLY_PAGE),),
    ("jobs/<int:pk>/cancel/", "POST"): (P("/jobs/{job}/cancel/", ADMINS_ONLY_PAGE),),
    ("jobs/<int:pk>/resume/", "GET"): (P("/jobs/{job}/resume/", POST_ONLY_PAGE),),
    # The world's job is a queued patch extraction: an admin is sent back to its page, told it cannot resume.
    ("jobs/<int:pk>/resume/", "POST"): (P("/jobs/{job}/resume/", ADMINS_ONLY_PAGE),),
    ("models/<int:pk>/", "GET"): (P("/models/{model}/", EVERY_ROLE_READS_PAGE),),
    ("media/<path:path>", "GET"): (
        P("/media/{media}", EVERY_ROLE_READS_PAGE),
        P("/media/{overlay}", "login 200 404 200"),  # the mammogram's finding outlines: truth, blind
        P("/media/{mask}", "login 200 404 200"),  # its finding's mask
    ),
    # -- unit pages ---------------------------------------------------------------------------------------
    ("models/<int:pk>/units/", "GET"): (P("/models/{model}/units/", EVERY_ROLE_READS_PAGE),),
    ("models/<int:pk>/units/next/", "GET"): (P("/models/{model}/units/next/", "login 302 302 302"),),
    ("models/<int:pk>/units/export.<str:fmt>", "GET"): (
        P("/models/{model}/units/export.csv", NOT_BLIND_EXPERTS_PAGE),
        P("/models/{model}/units/export.json", NOT_BLIND_EXPERTS_PAGE),
    ),
    ("units/<int:pk>/", "GET"): (
        P("/units/{unit}/", EVERY_ROLE_READS_PAGE),
        P("/units/{unit2}/", EVERY_ROLE_READS_PAGE),
    ),
    # -- fracture pages -----------------------------------------------------------------------------------
    ("datasets/<int:pk>/fractures/", "GET"): (P("/datasets/{hips}/fractures/", "login 302 302 302"),),
    ("datasets/<int:pk>/fractures/<int:image_pk>/", "GET"): (
        P("/datasets/{hips}/fractures/{hip}/", EVERY_ROLE_READS_PAGE),
        P("/datasets/{hips}/fractures/{hip2}/", EVERY_ROLE_READS_PAGE),
    ),
    # -- explanation pages --------------------------------------------------------------------------------
    ("images/<int:pk>/", "GET"): (
        P("/images/{image}/", EVERY_ROLE_READS_PAGE),
        P("/images/{hip}/", EVERY_ROLE_READS_PAGE),
    ),
    ("explain/", "GET"): (P("/explain/", EVERY_ROLE_READS_PAGE),),
    ("explain/", "POST"): (P("/explain/", "login 302 302 302", {"file": "{png}"}),),
    ("explain/<int:pk>/", "GET"): (P("/explain/{upload}/?model={model}", OWNER_AND_ADMINS_PAGE),),
    ("images/<int:pk>/deepzoom.dzi", "GET"): (P("/images/{image}/deepzoom.dzi", EVERY_ROLE_READS_PAGE),),
    ("images/<int:pk>/deepzoom_files/<int:level>/<int:column>_<int:row>.jpg", "GET"): (
        P(f"/images/{{image}}/{TILE}", EVERY_ROLE_READS_PAGE),
    ),
    ("images/<int:pk>/outlines.png", "GET"): (
        P("/images/{image}/outlines.png", "login 200 404 200"),  # the truth of a blind dataset
        P("/images/{hip}/outlines.png", "login 200 404 200"),  # the truth of what the expert labels
    ),
    ("explain/<int:pk>/deepzoom.dzi", "GET"): (P("/explain/{upload}/deepzoom.dzi", OWNER_AND_ADMINS_PAGE),),
    ("explain/<int:pk>/deepzoom_files/<int:level>/<int:column>_<int:row>.jpg", "GET"): (
        P(f"/explain/{{upload}}/{TILE}", OWNER_AND_ADMINS_PAGE),
    ),
    ("models/<int:pk>/explanations/export.<str:fmt>", "GET"): (
        P("/models/{model}/explanations/export.csv", NOT_BLIND_EXPERTS_PAGE),
        P("/models/{model}/explanations/export.json", NOT_BLIND_EXPERTS_PAGE),
    ),
    ("models/<int:pk>/explanations/report/", "GET"): (
        P("/models/{model}/explanations/report/?split=test", NOT_BLIND_EXPERTS_PAGE),
    ),
    # -- reader study pages: the expert is a reader of {study}, nobody else is ----------------------------
    ("studies/new/", "GET"): (P("/studies/new/", "login 403 403 200"),),
    ("studies/new/", "POST"): (P("/studies/new/", "login 403 403 200", {"name": ""}),),  # refused: the form again
    ("studies/<int:pk>/", "GET"): (P("/studies/{study}/", "login 403 200 403"),),
    ("studies/<int:pk>/results/", "GET"): (P("/studies/{study}/results/", NOT_BLIND_EXPERTS_PAGE),),
    # -- the API: its schema ------------------------------------------------------------------------------
    ("api/schema/", "GET"): (P("/api/schema/", EVERY_ROLE_READS_API),),
    ("api/docs/", "GET"): (P("/api/docs/", EVERY_ROLE_READS_API),),
    # -- core API -----------------------------------------------------------------------------------------
    ("api/datasets/", "GET"): (P("/api/datasets/", EVERY_ROLE_READS_API),),
    ("api/datasets/<int:pk>/", "GET"): (
        P("/api/datasets/{mammo}/", EVERY_ROLE_READS_API),
        P("/api/datasets/{hips}/", EVERY_ROLE_READS_API),
    ),
    ("api/images/", "GET"): (
        P("/api/images/", EVERY_ROLE_READS_API),
        P("/api/images/?dataset={hips}", EVERY_ROLE_READS_API),
    ),
    ("api/images/<int:pk>/", "GET"): (
        P("/api/images/{image}/", EVERY_ROLE_READS_API),
        P("/api/images/{hip}/", EVERY_ROLE_READS_API),
    ),
    ("api/jobs/", "GET"): (P("/api/jobs/", EVERY_ROLE_READS_API),),
    ("api/jobs/create/", "POST"): (
        P("/api/jobs/create/", "403 403 403 201", {"kind": "extract_patches", "dataset": "{mammo}"}),
    ),
    ("api/jobs/<int:pk>/", "GET"): (P("/api/jobs/{job}/", EVERY_ROLE_READS_API),),
    ("api/jobs/<int:pk>/cancel/", "POST"): (P("/api/jobs/{job}/cancel/", ADMINS_ONLY_API),),
    # Resuming what is not a failed or cancelled training job: 409 for an admin.
    ("api/jobs/<int:pk>/resume/", "POST"): (P("/api/jobs/{job}/resume/", "403 403 403 409"),),
    # -- unit API -----------------------------------------------------------------------------------------
    ("api/models/<int:pk>/units/", "GET"): (P("/api/models/{model}/units/", EVERY_ROLE_READS_API),),
    ("api/models/<int:pk>/units/export.<str:fmt>", "GET"): (
        P("/api/models/{model}/units/export.csv", NOT_BLIND_EXPERTS_API),
        P("/api/models/{model}/units/export.json", NOT_BLIND_EXPERTS_API),
    ),
    ("api/models/<int:pk>/agreement/", "GET"): (P("/api/models/{model}/agreement/", NOT_BLIND_EXPERTS_API),),
    ("api/units/<int:pk>/", "GET"): (
        P("/api/units/{unit}/", EVERY_ROLE_READS_API),
        P("/api/units/{unit2}/", EVERY_ROLE_READS_API),
    ),
    ("api/units/<int:pk>/annotations/", "GET"): (
        P("/api/units/{unit}/annotations/", EVERY_ROLE_READS_API),
        P("/api/units/{unit2}/annotations/", EVERY_ROLE_READS_API),
    ),
    ("api/units/<int:pk>/annotations/save/", "PUT"): (
        P("/api/units/{unit}/annotations/save/", ANNOTATORS_API, {"version": 0, "recognizable": "yes"}),
        # The expert answered unit2 already: a first save again is a conflict whose body is the expert's own.
        P("/api/units/{unit2}/annotations/save/", "403 403 409 200", {"version": 0, "recognizable": "no"}),
    ),
    ("api/units/<int:pk>/consensus/", "PUT"): (
        P("/api/units/{unit}/consensus/", ADMINS_ONLY_API, {"version": 0, "recognizable": "no"}),
    ),
    ("api/units/<int:pk>/consensus/", "DELETE"): (P("/api/units/{unit2}/consensus/", "403 403 403 204"),),
    ("api/units/<int:pk>/history/", "GET"): (
        P("/api/units/{unit}/history/", EVERY_ROLE_READS_API),
        P("/api/units/{unit2}/history/", EVERY_ROLE_READS_API),
    ),
    ("api/concepts/", "GET"): (P("/api/concepts/", EVERY_ROLE_READS_API),),
    # -- fracture API -------------------------------------------------------------------------------------
    ("api/images/<int:pk>/fractures/", "GET"): (
        P("/api/images/{hip}/fractures/", EVERY_ROLE_READS_API),
        P("/api/images/{hip2}/fractures/", EVERY_ROLE_READS_API),
    ),
    ("api/images/<int:pk>/fractures/save/", "PUT"): (
        P("/api/images/{hip}/fractures/save/", ANNOTATORS_API, {"version": 0, "fracture": False}),
        P("/api/images/{hip2}/fractures/save/", "403 403 409 200", {"version": 0, "fracture": False}),
    ),
    ("api/images/<int:pk>/fractures/history/", "GET"): (
        P("/api/images/{hip}/fractures/history/", EVERY_ROLE_READS_API),
        P("/api/images/{hip2}/fractures/history/", EVERY_ROLE_READS_API),
    ),
    ("api/fractures/<int:pk>/", "GET"): (
        P("/api/fractures/{label_other}/", "403 200 404 200"),  # another expert's label: as if it did not exist
        P("/api/fractures/{label_mine}/", EVERY_ROLE_READS_API),
    ),
    ("api/datasets/<int:pk>/fractures/queue/", "GET"): (
        P("/api/datasets/{hips}/fractures/queue/", EVERY_ROLE_READS_API),
    ),
    ("api/datasets/<int:pk>/fractures/export.<str:fmt>", "GET"): (
        P("/api/datasets/{hips}/fractures/export.csv", EVERY_ROLE_READS_API),
        P("/api/datasets/{hips}/fractures/export.json", EVERY_ROLE_READS_API),
    ),
    # -- reader study API ---------------------------------------------------------------------------------
    ("api/studies/<int:pk>/items/", "GET"): (P("/api/studies/{study}/items/", READER_ONLY_API),),
    ("api/studies/<int:pk>/items/<str:key>/rating/", "PUT"): (
        P("/api/studies/{study}/items/{study_item}/rating/", READER_ONLY_API, {"score": 3}),
    ),
    ("api/studies/<int:pk>/results/", "GET"): (P("/api/studies/{study}/results/", NOT_BLIND_EXPERTS_API),),
    ("api/studies/<int:pk>/export.<str:fmt>", "GET"): (
        P("/api/studies/{study}/export.csv", NOT_BLIND_EXPERTS_API),
        P("/api/studies/{study}/export.json", NOT_BLIND_EXPERTS_API),
    ),
    # -- explanation API ----------------------------------------------------------------------------------
    ("api/images/<int:pk>/explanation/", "GET"): (
        P("/api/images/{image}/explanation/?model={model}", EVERY_ROLE_READS_API),
    ),
    # The world's model has no readable checkpoint: a signed-in upload gets as far as explaining (409).
    ("api/explain/", "POST"): (P("/api/explain/", "403 409 409 409", {"file": "{png}"}),),
    ("api/uploads/<int:pk>/explanation/", "GET"): (
        P("/api/uploads/{upload}/explanation/?model={model}", OWNER_AND_ADMINS_API),
    ),
}
