"""Files of a run directory through its fsspec filesystem, so curation stages work on local paths and URLs alike.

``RunDir`` resolves a local path or a URL (``s3://``, ``memory://``) to one filesystem; these helpers list, read, size
and delete through it and hand back paths in the run's own form (URLs keep their protocol), so a stage never calls
``glob``, ``os.remove`` or ``pq.read_table(path)`` on something that may not be local.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenwise.rundir import RunDir, fs_and_path


def _is_url(path: str) -> bool:
    return "://" in str(path)


def glob(run: RunDir, *parts: str) -> list[str]:
    """Sorted paths under the run matching ``parts`` (the last part may hold ``*``), in the run's path form."""
    pattern = run.path(*parts)
    fs, p = fs_and_path(pattern)
    found = sorted(fs.glob(p))
    return [fs.unstrip_protocol(f) for f in found] if _is_url(run.root) else found


def exists(path: str) -> bool:
    fs, p = fs_and_path(path)
    return fs.exists(p)


def size(path: str) -> int:
    fs, p = fs_and_path(path)
    return int(fs.size(p))


def remove(path: str) -> None:
    fs, p = fs_and_path(path)
    fs.rm(p)


def read_text(path: str) -> str:
    fs, p = fs_and_path(path)
    with fs.open(p, "r", encoding="utf-8") as f:
        return f.read()


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file (or some of its columns); local files are memory-mapped, URLs read through fsspec."""
    if not _is_url(path):
        return pq.read_table(path, columns=columns)
    fs, p = fs_and_path(path)
    with fs.open(p, "rb") as f:
        return pq.read_table(f, columns=columns)


def read_schema(path: str) -> pa.Schema:
    if not _is_url(path):
        return pq.read_schema(path)
    fs, p = fs_and_path(path)
    with fs.open(p, "rb") as f:
        return pq.read_schema(f)


@contextlib.contextmanager
def parquet_file(path: str) -> Iterator[pq.ParquetFile]:
    """A ``ParquetFile`` for streaming row groups / batches, local or remote."""
    if not _is_url(path):
        yield pq.ParquetFile(path)
        return
    fs, p = fs_and_path(path)
    with fs.open(p, "rb") as f:
        yield pq.ParquetFile(f)


@contextlib.contextmanager
def local_npy(paths: list[str]) -> Iterator[list[Any]]:
    """``.npy`` arrays memory-mapped: local files in place, remote ones copied to a temporary directory first (so
    memory stays bounded by what is sliced, not by the files' size)."""
    if not any(_is_url(p) for p in paths):
        yield [np.load(p, mmap_mode="r") for p in paths]
        return
    with tempfile.TemporaryDirectory(prefix="tokenwise-npy-") as tmp:
        local = []
        for i, path in enumerate(paths):
            fs, p = fs_and_path(path)
            dst = os.path.join(tmp, f"{i}.npy")
            fs.get(p, dst)
            local.append(dst)
        yield [np.load(p, mmap_mode="r") for p in local]
