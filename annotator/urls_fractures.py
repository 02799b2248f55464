"""Routes of the fracture-descriptor pages and API."""

from django.urls import path

from .api import fractures as api
from .views import fractures as views

api_urlpatterns = [
    path("images/<int:pk>/fractures/", api.FractureLabelListApi.as_view(), name="api-fracture-label-list"),
    path("images/<int:pk>/fractures/save/", api.FractureLabelSaveApi.as_view(), name="api-fracture-label-save"),
    path("images/<int:pk>/fractures/history/", api.FractureHistoryApi.as_view(), name="api-fracture-history"),
    path("fractures/<int:pk>/", api.FractureLabelDetailApi.as_view(), name="api-fracture-label-detail"),
    path("datasets/<int:pk>/fractures/queue/", api.FractureQueueApi.as_view(), name="api-fracture-queue"),
    path("datasets/<int:pk>/fractures/export.csv", api.FractureExportCsvApi.as_view(), name="api-fracture-export-csv"),
    path(
        "datasets/<int:pk>/fractures/export.json", api.FractureExportJsonApi.as_view(), name="api-fracture-export-json"
    ),
]

urlpatterns = [
    path("datasets/<int:pk>/fractures/", views.fracture_queue, name="fracture-queue"),
    path("datasets/<int:pk>/fractures/<int:image_pk>/", views.fracture_label, name="fracture-label"),
]
