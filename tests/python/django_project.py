"""django_project.py — shared by the Django tests: puts the example service (client-shim/python/examples/
django_service) on sys.path with its own settings, its console log off (the records still go to the agent),
and starts Django once per process. Import it before anything from django.

The example's LOGGING sends the service's own log lines through logagent's process-wide client, so a test
points that client at its agent with logagent.configure(socket_path=...)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CLIENT_DIR = os.path.join(ROOT, "client-shim", "python")
EXAMPLE_DIR = os.path.join(CLIENT_DIR, "examples", "django_service")

for p in (os.path.join(ROOT, "tests", "integration"), CLIENT_DIR, EXAMPLE_DIR):
    if p not in sys.path:
        sys.path.insert(0, p)

os.environ["DJANGO_SETTINGS_MODULE"] = "django_service.settings"
os.environ["DJANGO_LOG_CONSOLE"] = "0"
os.environ["DJANGO_LOG_BACKEND"] = "logagent"
for k in [k for k in os.environ if k.startswith("LOGAGENT_CLIENT_")]:
    del os.environ[k]  # the defaults, whatever the caller's shell says

import django  # noqa: E402

django.setup()
