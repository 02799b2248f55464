"""Routes of the unit list, unit survey, agreement and export pages and API."""

from django.urls import path

from .api import units as api
from .views import units as views

api_urlpatterns = [
    path("concepts/", api.ConceptListApi.as_view(), name="api-concept-list"),
    path("models/<int:pk>/units/", api.UnitListApi.as_view(), name="api-unit-list"),
    path("models/<int:pk>/agreement/", api.ModelAgreementApi.as_view(), name="api-model-agreement"),
    path("models/<int:pk>/units/export/<str:fmt>/", api.UnitExportApi.as_view(), name="api-unit-export"),
    path("units/<int:pk>/", api.UnitDetailApi.as_view(), name="api-unit-detail"),
    path("units/<int:pk>/annotation/", api.UnitAnnotationSaveApi.as_view(), name="api-unit-annotation"),
    path("units/<int:pk>/annotations/", api.UnitAnnotationListApi.as_view(), name="api-unit-annotations"),
    path("units/<int:pk>/consensus/", api.UnitConsensusApi.as_view(), name="api-unit-consensus"),
    path("units/<int:pk>/history/", api.UnitHistoryApi.as_view(), name="api-unit-history"),
]

urlpatterns = [
    path("models/<int:pk>/units/", views.unit_list, name="unit-list"),
    path("models/<int:pk>/units/next/", views.unit_next_unannotated, name="unit-next-unannotated"),
    path("models/<int:pk>/units/export.<str:fmt>", views.unit_export, name="unit-export"),
    path("units/<int:pk>/", views.unit_survey, name="unit-survey"),
]
