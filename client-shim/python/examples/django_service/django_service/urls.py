"""urls.py — the service's URLs: the log API under /api/, and JSON answers for 404 and 500 (an API client
should never have to parse an HTML error page)."""
from django.urls import include, path

urlpatterns = [
    path("api/", include("logs.urls")),
]

handler404 = "logs.views.not_found"
handler500 = "logs.views.server_error"
