"""Routes of the reader-study pages and API."""

from django.urls import URLPattern, URLResolver, path

from ..api import reader_studies as api
from ..views import reader_studies as views

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("studies/<int:pk>/items/", api.StudyItemListApi.as_view(), name="study-items"),
    path("studies/<int:pk>/items/<str:key>/rating/", api.StudyRatingSaveApi.as_view(), name="study-rating-save"),
    path("studies/<int:pk>/results/", api.StudyResultsApi.as_view(), name="study-results"),
    path("studies/<int:pk>/export.<str:fmt>", api.StudyExportApi.as_view(), name="study-export"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("studies/new/", views.study_new, name="study-new"),
    path("studies/<int:pk>/", views.study_rate, name="study-rate"),
    path("studies/<int:pk>/results/", views.study_results, name="study-results"),
]
