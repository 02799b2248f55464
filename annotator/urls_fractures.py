"""Routes of the fracture-descriptor pages and API (filled in by the fracture labelling work)."""

api_urlpatterns: list = []
urlpatterns: list = []
