"""wsgi.py — the WSGI entry point, for a real server (gunicorn django_service.wsgi, uWSGI, mod_wsgi).

logagent's process-wide client is fork-safe: pre-fork workers each open their own connection to the agent on
their first write, so nothing needs to happen in a post-fork hook."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_service.settings")
application = get_wsgi_application()
