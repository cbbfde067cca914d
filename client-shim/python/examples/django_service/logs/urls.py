"""urls.py — the original service's endpoints, under /api/ (django_service/urls.py)."""
from django.urls import path

from . import views

urlpatterns = [
    path("write_log/", views.write_log, name="write_log"),
    path("batch_write_test/", views.batch_write_test, name="batch_write_test"),
    path("concurrent_test/", views.concurrent_test, name="concurrent_test"),
]
