"""setup.py — the one thing pyproject.toml cannot say with this setuptools: the optional C extension.

logagent._speedups (logagent/_speedups.c), the C encoder of write_log's records, is built when a compiler and
the interpreter's headers are there; otherwise (optional=True) the install goes on with the pure-Python encoder,
which the package falls back to by itself (logagent.implementation says which one runs). CPython >= 3.10 gets
the stable ABI (one _speedups.abi3.so); PyPy and other interpreters get the pure module."""
import platform
import sys

from setuptools import Extension, setup

ext_modules = []
if platform.python_implementation() == "CPython":
    limited = sys.version_info >= (3, 10)
    ext_modules.append(Extension(
        "logagent._speedups", ["logagent/_speedups.c"], optional=True, py_limited_api=limited,
        define_macros=[("Py_LIMITED_API", "0x030A0000")] if limited else []))

setup(ext_modules=ext_modules)
