from django.urls import path

from . import urls_fractures, urls_units
from .api import core as api
from .views import pages as views

api_urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/<int:pk>/", api.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path("images/", api.ImageListApi.as_view(), name="api-image-list"),
    path("images/<int:pk>/", api.ImageDetailApi.as_view(), name="api-image-detail"),
    path("jobs/", api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/create/", api.JobCreateApi.as_view(), name="api-job-create"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/cancel/", api.JobCancelApi.as_view(), name="api-job-cancel"),
    *urls_units.api_urlpatterns,
    *urls_fractures.api_urlpatterns,
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/extract-patches/", views.dataset_extract_patches, name="dataset-extract-patches"),
    path("jobs/new/", views.job_new, name="job-new"),
    path("jobs/<int:pk>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("media/<path:path>", views.media, name="media"),
    path("healthz", views.healthz, name="healthz"),
    *urls_units.urlpatterns,
    *urls_fractures.urlpatterns,
]
