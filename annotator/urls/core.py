"""Routes of the dashboard, dataset, job and model pages and of the datasets, images and jobs API."""

from django.urls import URLPattern, URLResolver, include, path

from ..api import core as api
from ..api.training_resume import JobResumeApi
from ..views import imports
from ..views import jobs as job_views
from ..views import pages as views
from ..views.media import media

# Under /api/jobs/.
_job_api_urlpatterns: list[URLPattern] = [
    path("", api.JobListApi.as_view(), name="job-list"),
    path("create/", api.JobCreateApi.as_view(), name="job-create"),
    path("<int:pk>/", api.JobDetailApi.as_view(), name="job-detail"),
    path("<int:pk>/cancel/", api.JobCancelApi.as_view(), name="job-cancel"),
    path("<int:pk>/resume/", JobResumeApi.as_view(), name="job-resume"),
]

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/", api.DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<int:pk>/", api.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("images/", api.ImageListApi.as_view(), name="image-list"),
    path("images/<int:pk>/", api.ImageDetailApi.as_view(), name="image-detail"),
    path("jobs/", include(_job_api_urlpatterns)),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/extract-patches/", views.dataset_extract_patches, name="dataset-extract-patches"),
    path("datasets/import/", imports.dataset_import_new, name="dataset-import"),
    path("datasets/import/<int:pk>/", imports.dataset_import_detail, name="dataset-import-detail"),
    path("jobs/new/", views.job_new, name="job-new"),
    path("jobs/<int:pk>/", job_views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("jobs/<int:pk>/resume/", job_views.job_resume_view, name="job-resume"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("media/<path:path>", media, name="media"),
    path("healthz", views.healthz, name="healthz"),
]
