"""Builders for text every Linux machine has: Python's stdlib (code and docstrings) and directories of prose.

* ``code``: each stdlib module is one document (id ``<source>:<path relative to the stdlib>``); modules over a size
  bound are skipped before reading; tests, ``site-packages`` and caches are excluded by default.
* ``docs`` from code: module, class and function docstrings extracted with :mod:`ast` (``inspect.cleandoc``-ed), one
  document each (id ``<source>:<path>:<qualified name>``); a module that does not parse is quarantined as
  ``invalid_python``.
* ``docs`` from a prose directory: each matching file (``*.md``, ``*.rst``, ``*.txt``, ``README*``, ``*.gz`` ...) is
  one document, read through the same checks as every text file (binary, empty, UTF-8, NUL, size).
"""

from __future__ import annotations

import ast
import fnmatch
import sysconfig
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from curation.ingest.readers import Batch, ReadOptions, iter_text_files, quarantine, read_text_file, rows_to_table
from tokenwise.pysource import parse_python

STDLIB_EXCLUDE = ["test/*", "*/test/*", "*/tests/*", "idlelib/idle_test/*", "site-packages/*", "dist-packages/*",
                  "*/__pycache__/*", "lib2to3/tests/*", "config-*/*"]  # fmt: skip


def stdlib_root() -> str:
    """Directory of this interpreter's standard library sources."""
    return sysconfig.get_paths()["stdlib"]


def select_files(root: str | Path, patterns: list[str], exclude: list[str], max_bytes: int, max_files: int | None,
                 skipped: Counter | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """Sorted (path, relative path) of files under root matching a pattern, not excluded, at most max_bytes each."""
    base = Path(root)
    out: list[tuple[str, str]] = []
    for p in sorted({p for pat in patterns for p in base.rglob(pat)}):
        rel = p.relative_to(base).as_posix()
        if not p.is_file() or any(fnmatch.fnmatchcase(rel, g) for g in exclude):
            continue
        if p.stat().st_size > max_bytes:
            if skipped is not None:
                skipped["over_max_file_bytes"] += 1
            continue
        out.append((str(p), rel))
        if max_files is not None and len(out) >= max_files:
            break
    return out


def iter_code(files: list[tuple[str, str]], opts: ReadOptions) -> Iterator[Batch]:
    """Whole modules as ``code`` documents."""
    return iter_text_files(files, opts)


def docstrings(source: str) -> Iterator[tuple[str, str]]:
    """(qualified name, cleaned docstring) of a module and every class and function in it, in source order."""
    tree = parse_python(source)
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield prefix or "<module>", doc
        children = [c for c in ast.iter_child_nodes(node)
                    if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]  # fmt: skip
        stack.extend((c, f"{prefix}.{c.name}" if prefix else c.name) for c in reversed(children))


def iter_docstrings(
    files: list[tuple[str, str]], opts: ReadOptions, min_chars: int, skipped: Counter
) -> Iterator[Batch]:
    """Docstrings of modules as ``docs`` documents; short ones (< min_chars) are skipped, not records."""
    rows: list[dict] = []
    for path, rel in files:
        item = read_text_file(path, opts, rel)
        if not hasattr(item, "num_rows"):  # the module itself is reported by the code source
            skipped[f"module_{item.reason}"] += 1
            continue
        try:
            found = list(docstrings(item.column("text")[0].as_py()))
        except (SyntaxError, ValueError) as e:
            yield quarantine(path, "invalid_python", getattr(e, "lineno", None), detail=f"{type(e).__name__}: {e}")
            continue
        for qual, doc in found:
            if len(doc) < min_chars:
                skipped["short_docstring"] += 1
                continue
            rows.append({"id": f"{opts.id_prefix or opts.source}:{rel}:{qual}", "text": doc, "source": opts.source,
                         "lang": opts.lang, "domain": opts.domain, "unit_id": None})  # fmt: skip
        if len(rows) >= opts.batch_rows:
            yield rows_to_table(rows)
            rows = []
    if rows:
        yield rows_to_table(rows)
