"""Routes of the fracture-labelling pages and API."""

from django.urls import URLPattern, URLResolver, include, path

from ..api import fractures as api
from ..views import fractures as views

# Under /api/images/<pk>/fractures/: one image's labels.
_image_api_urlpatterns: list[URLPattern] = [
    path("", api.FractureLabelListApi.as_view(), name="fracture-label-list"),
    path("save/", api.FractureLabelSaveApi.as_view(), name="fracture-label-save"),
    path("history/", api.FractureHistoryApi.as_view(), name="fracture-history"),
]

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("images/<int:pk>/fractures/", include(_image_api_urlpatterns)),
    path("fractures/<int:pk>/", api.FractureLabelDetailApi.as_view(), name="fracture-label-detail"),
    path("datasets/<int:pk>/fractures/queue/", api.FractureQueueApi.as_view(), name="fracture-queue"),
    path("datasets/<int:pk>/fractures/export.<str:fmt>", api.FractureExportApi.as_view(), name="fracture-export"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/<int:pk>/fractures/", views.fracture_queue, name="fracture-queue"),
    path("datasets/<int:pk>/fractures/<int:image_pk>/", views.fracture_label, name="fracture-label"),
]
