"""Routes of the unit list, unit survey, consensus and export pages and API."""

api_urlpatterns: list = []
urlpatterns: list = []
