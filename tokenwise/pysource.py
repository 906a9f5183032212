"""Parsing Python source into an AST, safe to call from several threads on CPython 3.11."""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` under a process-wide lock.

    CPython 3.11 keeps the AST constructor's recursion counter in interpreter-wide state, so two threads converting
    source at once can fail with ``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905).
    Serialising the call avoids it; parsing is a small share of any stage that reads Python files.
    """
    with _LOCK:
        return ast.parse(source)
