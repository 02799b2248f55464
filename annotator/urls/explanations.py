"""Routes of the image page, the upload form, explanation exports and the printable report, and of the
explanation API."""

from django.urls import URLPattern, path

from ..api import explanations as api
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
    path("models/<int:pk>/explanations/export.<str:fmt>", views.explanation_export, name="explanation-export"),
    path("models/<int:pk>/explanations/report/", views.explanation_report, name="explanation-report"),
]
