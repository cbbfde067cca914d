"""original_proto.py — the logagent.v1 protobuf messages for the original design's client and server
(original_client.py, original_server.py), compiled at run time from the repository's proto/ folder.

`protoc --python_out` (Debian's protobuf-compiler) writes logagent/v1/log_service_pb2.py into a temporary folder;
it is loaded from there under its own module name (so it never shadows the `logagent` client package) with
Debian's python3-protobuf, and the folder is removed. Nothing generated is committed or left behind. It happens
once per process, on first use (about 20 ms).

Where the .proto is: $ORIGINAL_PROTO_DIR (a folder holding logagent/v1/log_service.proto), else the repository's
proto/ folder found from this file's place (client-shim/python/examples/original/ → ../../../../proto).
"""
import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading

SERVICE = "logagent.v1.LogService"
WRITE_LOG_METHOD = "/logagent.v1.LogService/WriteLog"
PROTO_FILE = os.path.join("logagent", "v1", "log_service.proto")
MODULE_NAME = "_original_logagent_v1_log_service_pb2"

_lock = threading.Lock()
_module = None


def proto_root():
    """The folder the .proto is compiled from (see the module's docstring)."""
    env = os.environ.get("ORIGINAL_PROTO_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "..", "proto"))


def _compile():
    root = proto_root()
    src = os.path.join(root, PROTO_FILE)
    if not os.path.isfile(src):
        raise RuntimeError("original_proto: %s not found (set ORIGINAL_PROTO_DIR to the folder holding %s)"
                           % (src, PROTO_FILE))
    protoc = shutil.which("protoc")
    if protoc is None:
        raise RuntimeError("original_proto: protoc not found (Debian: apt-get install protobuf-compiler)")
    out = tempfile.mkdtemp(prefix="original-proto-")
    try:
        r = subprocess.run([protoc, "-I", root, "--python_out", out, src], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("original_proto: protoc failed (exit %d): %s"
                               % (r.returncode, r.stderr.decode(errors="replace").strip()))
        path = os.path.join(out, "logagent", "v1", "log_service_pb2.py")
        spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        shutil.rmtree(out, ignore_errors=True)


def messages():
    """The generated module: WriteLogRequest, WriteLogResponse, BatchWriteLogsRequest, ... Compiled on first use;
    thread-safe. Raises RuntimeError (with what to install or set) when protoc or the .proto is missing."""
    global _module
    with _lock:
        if _module is None:
            _module = _compile()
        return _module
