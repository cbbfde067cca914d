"""apps.py — the `log_client` Django app (INSTALLED_APPS = [..., "log_client"], as in the original project).

ready() makes the client once, so that a wrong LOG_CLIENT_BACKEND, a bad LOGAGENT_CLIENT_* value or a missing
original client stops runserver/the WSGI server at start-up with the reason, instead of failing every call.
Making it connects to nothing: an agent (or original service) that is down is no start-up error."""
from django.apps import AppConfig


class LogClientConfig(AppConfig):
    name = "log_client"
    verbose_name = "Log client (logagent)"

    def ready(self):
        from . import client
        client.get_log_client()
