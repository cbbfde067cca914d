"""apps.py — the `logs` app. Loads the chosen write_log backend at start-up, so that a wrong
DJANGO_LOG_BACKEND or a missing original client stops `runserver`/the WSGI server with the reason instead of
failing every request."""
from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "logs"

    def ready(self):
        from . import backend
        backend.get()
