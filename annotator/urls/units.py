"""Routes of the unit list, unit survey and export pages and of the unit survey API."""

from django.urls import URLPattern, URLResolver, include, path

from ..api import units as api
from ..views import units as views

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("concepts/", api.ConceptListApi.as_view(), name="concept-list"),
    path(
        "models/<int:pk>/",
        include(
            [
                path("units/", api.UnitListApi.as_view(), name="unit-list"),
                path("units/export.<str:fmt>", api.UnitExportApi.as_view(), name="unit-export"),
                path("agreement/", api.ModelAgreementApi.as_view(), name="model-agreement"),
            ]
        ),
    ),
    path(
        "units/<int:pk>/",
        include(
            [
                path("", api.UnitDetailApi.as_view(), name="unit-detail"),
                path("annotations/", api.UnitAnnotationListApi.as_view(), name="unit-annotation-list"),
                path("annotations/save/", api.UnitAnnotationSaveApi.as_view(), name="unit-annotation-save"),
                path("consensus/", api.UnitConsensusApi.as_view(), name="unit-consensus"),
                path("history/", api.UnitHistoryApi.as_view(), name="unit-history"),
            ]
        ),
    ),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "models/<int:pk>/units/",
        include(
            [
                path("", views.unit_list, name="unit-list"),
                path("next/", views.unit_next_unannotated, name="unit-next-unannotated"),
                path("export.<str:fmt>", views.unit_export, name="unit-export"),
            ]
        ),
    ),
    path("units/<int:pk>/", views.unit_survey, name="unit-survey"),
]
