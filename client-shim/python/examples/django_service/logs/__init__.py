"""The `logs` app: the original log service's endpoints (views.py) and the write_log they call (backend.py)."""
