"""The URL root: admin and sign-in, the JSON API under /api/ in the ``api`` namespace (its schema
included), and the pages without a namespace. The naming rule is in ``annotator/urls/__init__.py``."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotator.urls import api_urlpatterns

api_urls: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own: no inline script for the CSP.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="annotator/api_docs.html"),
        name="docs",
    ),
    *api_urlpatterns,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include((api_urls, "api"))),
    path("", include("annotator.urls")),
]

# JSON errors under /api/ even when no API view ran; the usual pages elsewhere.
handler400 = "annotator.api.errors.bad_request"
handler404 = "annotator.api.errors.not_found"
handler500 = "annotator.api.errors.server_error"
