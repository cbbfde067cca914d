"""The example Django project: the original log service's HTTP API, with logagent's write_log behind it."""
