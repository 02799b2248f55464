"""Routes of the fracture-labelling pages and API."""

from django.urls import URLPattern, URLResolver, include, path

from ..api import fractures as api
from ..views import fractures as views

api_urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "images/<int:pk>/fractures/",
        include(
            [
                path("", api.FractureLabelListApi.as_view(), name="fracture-label-list"),
                path("save/", api.FractureLabelSaveApi.as_view(), name="fracture-label-save"),
                path("history/", api.FractureHistoryApi.as_view(), name="fracture-history"),
            ]
        ),
    ),
    path("fractures/<int:pk>/", api.FractureLabelDetailApi.as_view(), name="fracture-label-detail"),
    path(
        "datasets/<int:pk>/fractures/",
        include(
            [
                path("queue/", api.FractureQueueApi.as_view(), name="fracture-queue"),
                path("export.<str:fmt>", api.FractureExportApi.as_view(), name="fracture-export"),
            ]
        ),
    ),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/<int:pk>/fractures/", views.fracture_queue, name="fracture-queue"),
    path("datasets/<int:pk>/fractures/<int:image_pk>/", views.fracture_label, name="fracture-label"),
]
