"""log_client — the original Django log service's client app, as a drop-in backed by logagent.

A project written for the original service keeps its code and settings:

    INSTALLED_APPS = [..., "log_client"]
    from log_client.client import write_log
    write_log("user logged in", service_name="auth", level="INFO", user="alice")
    # {"success": True, "log_id": "…(32 hex)", "error_message": ""}

client.py has the original's public API (DjangoLogServiceClient, get_log_client, write_log) on top of logagent's
client (the default) or, with LOG_CLIENT_BACKEND = "original", the original design (one unary gRPC WriteLog per
record to LOG_SERVICE_GRPC_SERVER). Settings are read from django.conf.settings when they are there, else from
the environment. See client-shim/python/examples/django_service/README.md, "Switching from the original".
"""
