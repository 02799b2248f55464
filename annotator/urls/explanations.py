"""Routes of the image page, the upload form, explanation exports and the printable report, and of the
explanation API."""

from django.urls import URLPattern, path

from ..api import explanations as api
from ..views import deepzoom
from ..views import explanations as views

api_urlpatterns: list[URLPattern] = [
    path("images/<int:pk>/explanation/", api.ImageExplanationApi.as_view(), name="image-explanation"),
    path("explain/", api.UploadExplainApi.as_view(), name="upload-explain"),
    path("uploads/<int:pk>/explanation/", api.UploadExplanationApi.as_view(), name="upload-explanation"),
]

urlpatterns: list[URLPattern] = [
    path("images/<int:pk>/", views.image_detail, name="image-detail"),
    path("explain/", views.explain_upload, name="explain-upload"),
    path("explain/<int:pk>/", views.upload_detail, name="upload-detail"),
    # Deep zoom: OpenSeadragon asks for <name>_files/<level>/<column>_<row>.jpg beside <name>.dzi.
    path("images/<int:pk>/deepzoom.dzi", deepzoom.image_deepzoom, name="image-deepzoom"),
    path("images/<int:pk>/deepzoom_files/<int:level>/<int:column>_<int:row>.jpg", deepzoom.image_deepzoom_tile),
    path("images/<int:pk>/outlines.png", deepzoom.image_outlines, name="image-outlines"),
    path("explain/<int:pk>/deepzoom.dzi", deepzoom.upload_deepzoom, name="upload-deepzoom"),
    path("explain/<int:pk>/deepzoom_files/<int:level>/<int:column>_<int:row>.jpg", deepzoom.upload_deepzoom_tile),
    path("models/<int:pk>/explanations/export.<str:fmt>", views.explanation_export, name="explanation-export"),
    path("models/<int:pk>/explanations/report/", views.explanation_report, name="explanation-report"),
]
