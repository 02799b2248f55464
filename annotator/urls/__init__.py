"""Routes, one module per area like api/ and views/: core (datasets, images, jobs, models), units (unit
list, survey, consensus, exports), fractures (descriptor labels), explanations (image page, uploads, batch exports), reader_studies
(blinded reader studies). Each module holds its API routes
(``api_urlpatterns``) and its page routes (``urlpatterns``).

Naming: API routes live in the ``api`` namespace, mounted at ``/api/`` by ``config/urls.py``
(``reverse("api:unit-detail")``); page routes have no namespace (``reverse("unit-survey")``). Both are
named ``<entity>-<action>``.

One shape for one kind of route, in every area: an expert's label is saved with
``PUT <owner>/<pk>/<labels>/save/`` and a dataset's or model's labels are downloaded from
``GET .../export.<fmt>``, fmt csv or json.
"""

from django.urls import URLPattern, URLResolver

from . import core, explanations, fractures, reader_studies, units

__all__ = ["api_urlpatterns", "urlpatterns"]

api_urlpatterns: list[URLPattern | URLResolver] = [
    *core.api_urlpatterns,
    *units.api_urlpatterns,
    *fractures.api_urlpatterns,
    *explanations.api_urlpatterns,
    *reader_studies.api_urlpatterns,
]
urlpatterns: list[URLPattern | URLResolver] = [
    *core.urlpatterns,
    *units.urlpatterns,
    *fractures.urlpatterns,
    *explanations.urlpatterns,
    *reader_studies.urlpatterns,
]
