"""urls.py — the original service's endpoints, as the original project routed them:
path("api/", include("log_client.urls")) serves /api/write_log/, /api/batch_write_test/, /api/concurrent_test/
(views.py; write_log is log_client.client's)."""
from django.urls import path

from . import views

urlpatterns = [
    path("write_log/", views.write_log, name="write_log"),
    path("batch_write_test/", views.batch_write_test, name="batch_write_test"),
    path("concurrent_test/", views.concurrent_test, name="concurrent_test"),
]
