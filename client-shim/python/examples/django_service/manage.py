#!/usr/bin/env python3
"""manage.py — Django's command line for the example service (runserver, check, shell).

    LOGAGENT_SOCKET=/run/logagent/ingest.sock python3 manage.py runserver 127.0.0.1:8000
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_service.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
