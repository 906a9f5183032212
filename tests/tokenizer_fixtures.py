"""Real-text curated shards for the tokenizer tests and bench: .mo catalog strings (parallel UI units), Python stdlib
source (code) and stdlib docstrings (docs), written in CORPUS_SCHEMA as ``<run>/curated/shard-*.parquet``."""

from __future__ import annotations

import ast
import gettext
import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.pysource import parse_python
from tokenwise.rundir import atomic_open

LOCALE_DIR = Path("/usr/share/locale")
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _uid(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


SKIP_CATALOGS = ("iso_", "postgres", "xkeyboard", "pg_", "psql", "initdb")


def ui_rows(
    langs: list[str], catalogs: int | None = 6, max_units: int | None = None, shared_only: bool = True
) -> Iterator[dict]:
    """Translated UI strings for ``langs`` (+ their English msgids) from the first ``catalogs`` .mo files that every
    language has (``shared_only``) or that any of them has."""
    found = [{p.name for p in (LOCALE_DIR / lang / "LC_MESSAGES").glob("*.mo")} for lang in langs]
    names = sorted(set.intersection(*found) if shared_only else set.union(*found))
    names = [n for n in names if not n.startswith(SKIP_CATALOGS)]
    english_done: set[str] = set()
    for name in names[:catalogs]:
        for lang in langs:
            if not (LOCALE_DIR / lang / "LC_MESSAGES" / name).is_file():
                continue
            try:
                with open(LOCALE_DIR / lang / "LC_MESSAGES" / name, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog
            except (UnicodeDecodeError, OSError):  # a few catalogs declare a charset they do not use
                continue
            n = 0
            for key, text in sorted(catalog.items(), key=lambda kv: str(kv[0])):
                msgid = key[0] if isinstance(key, tuple) else key
                if not msgid or not text or (isinstance(key, tuple) and key[1] != 0):
                    continue
                unit = _uid(name, msgid)
                if unit not in english_done:
                    english_done.add(unit)
                    yield _row(f"en/{unit}", msgid, name, "en", "ui", unit)
                yield _row(f"{lang}/{unit}", text, name, lang, "ui", unit)
                n += 1
                if max_units and n >= max_units:
                    break


def stdlib_files(max_files: int, recursive: bool = False) -> list[Path]:
    """Stdlib modules, sorted; ``recursive`` adds packages (tests and site-packages left out)."""
    files = STDLIB.rglob("*.py") if recursive else STDLIB.glob("*.py")
    skip = ("site-packages", "test", "tests", "idle_test", "lib2to3")
    return sorted(p for p in files if not set(p.relative_to(STDLIB).parts[:-1]) & set(skip))[:max_files]


def code_rows(max_files: int = 60, max_chars: int = 20000, recursive: bool = False) -> Iterator[dict]:
    """Python stdlib modules (sorted, first ``max_files``), each a ``code`` document."""
    for p in stdlib_files(max_files, recursive):
        text = p.read_text(encoding="utf-8", errors="replace")[:max_chars]
        yield _row(f"code/{p.relative_to(STDLIB)}", text, str(p), "en", "code", None)


def docs_rows(max_files: int = 60, recursive: bool = False) -> Iterator[dict]:
    """Docstrings of stdlib modules, classes and functions (prose), each a ``docs`` document."""
    for p in stdlib_files(max_files, recursive):
        try:
            tree = parse_python(p.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and (doc := ast.get_docstring(node)):
                if len(doc) > 80:
                    where = f"{getattr(node, 'name', '')}/{getattr(node, 'lineno', 0)}"
                    yield _row(f"docs/{p.relative_to(STDLIB)}/{where}", doc, str(p), "en", "docs", None)


def _row(doc_id: str, text: str, source: str, lang: str, domain: str, unit: str | None) -> dict:
    return {"id": doc_id, "text": text, "source": source, "lang": lang, "domain": domain, "unit_id": unit}


def write_curated(run: Path, rows: Iterator[dict], shard_rows: int = 5000) -> list[str]:
    """Write rows as ``<run>/curated/shard-NNNNN.parquet`` (CORPUS_SCHEMA); ids made unique; returns the paths."""
    out, buf, seen = [], [], set()
    for r in rows:
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        buf.append(r)
        if len(buf) >= shard_rows:
            out.append(_flush(run, len(out), buf))
            buf = []
    if buf or not out:
        out.append(_flush(run, len(out), buf))
    return out


def _flush(run: Path, i: int, rows: list[dict]) -> str:
    path = run / "curated" / f"shard-{i:05d}.parquet"
    with atomic_open(path, "wb") as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), f)
    return str(path)


def build_run(
    run: Path,
    langs: list[str] = ("de", "hi", "ru"),
    catalogs: int = 4,
    code_files: int = 40,
    docs_files: int = 40,
    max_units: int | None = 400,
) -> Path:
    """A small curated run: UI units in ``langs`` (+ English), stdlib code and docstrings."""
    import itertools

    rows = itertools.chain(ui_rows(list(langs), catalogs, max_units), code_rows(code_files), docs_rows(docs_files))
    write_curated(run, rows)
    return run
