"""Routes of the unit list, unit survey and export pages and of the unit survey API."""

from django.urls import URLPattern, URLResolver, include, path

from ..api import units as api
from ..views import units as views

# Under /api/models/<pk>/: a model's units, export and agreement.
_model_api_urlpatterns: list[URLPattern] = [
    path("units/", api.UnitListApi.as_view(), name="unit-list"),
    path("units/export.<str:fmt>", api.UnitExportApi.as_view(), name="unit-export"),
    path("agreement/", api.ModelAgreementApi.as_view(), name="model-agreement"),
]

# Under /api/units/<pk>/: one unit, its answers, consensus and history.
_unit_api_urlpatterns: list[URLPattern] = [
    path("", api.UnitDetailApi.as_view(), name="unit-detail"),
    path("annotations/", api.UnitAnnotationListApi.as_view(), name="unit-annotation-list"),
    path("annotations/save/", api.UnitAnnotationSaveApi.as_view(), name="unit-annotation-save"),
    path("consensus/", api.UnitConsensusApi.as_view(), name="unit-consensus"),
    path("history/", api.UnitHistoryApi.as_view(), name="unit-history"),
]

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("models/<int:pk>/", include(_model_api_urlpatterns)),
    path("units/<int:pk>/", include(_unit_api_urlpatterns)),
    path("concepts/", api.ConceptListApi.as_view(), name="concept-list"),
]

# Under /models/<pk>/units/: the unit list page, the next unanswered unit and the export download.
_model_unit_urlpatterns: list[URLPattern] = [
    path("", views.unit_list, name="unit-list"),
    path("next/", views.unit_next_unannotated, name="unit-next-unannotated"),
    path("export.<str:fmt>", views.unit_export, name="unit-export"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("models/<int:pk>/units/", include(_model_unit_urlpatterns)),
    path("units/<int:pk>/", views.unit_survey, name="unit-survey"),
]
