"""Parsing Python source into an AST, robust to CPython 3.11's shared AST recursion counter."""

from __future__ import annotations

import ast
import gc
import threading

_LOCK = threading.Lock()
_ATTEMPTS = 3


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` under a process-wide lock with the cyclic garbage collector paused.

    CPython 3.11 keeps the AST constructor's recursion counter in interpreter-wide state. Anything that parses while
    a conversion is under way corrupts it and the outer call fails with ``SystemError: AST constructor recursion
    depth mismatch`` (python/cpython#106905): another thread, or a finalizer run by a garbage collection that starts
    inside the conversion and reports an exception (3.11's traceback formatting calls ``ast.parse`` for its carets).
    A thread outside this lock (a library's background thread) can still interfere, so that error is retried:
    the conversion is deterministic and the interference passes. Parsing is a small share of any stage that reads
    Python files.
    """
    with _LOCK:
        enabled = gc.isenabled()
        gc.disable()
        try:
            for attempt in range(_ATTEMPTS):
                try:
                    return ast.parse(source)
                except SystemError as e:
                    if "recursion depth mismatch" not in str(e) or attempt == _ATTEMPTS - 1:
                        raise
            raise AssertionError("unreachable")
        finally:
            if enabled:
                gc.enable()
