"""The run directory: one place every stage reads from and writes to, with atomic writes and completion markers.

Layout (see DESIGN.md): ``corpus/ signals/ curated/ tokens/ plans/ tokenizers/ models/ measure/ report/``. A stage
writes to a temporary name, renames it into place, then writes ``<stage>/_DONE.json`` holding the hash of its inputs
and config; a rerun whose marker matches skips the stage. Paths may be local or fsspec URLs (``s3://...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

STAGES = ("corpus", "signals", "curated", "tokens", "plans", "tokenizers", "models", "measure", "report")
MARKER = "_DONE.json"


def fs_and_path(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve a local path or fsspec URL to (filesystem, path)."""
    return url_to_fs(str(url))


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URLs alike."""
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])


class UnsafePathError(ValueError):
    """A user-controlled name would point outside the directory it names something in."""


def safe_join(root: str | os.PathLike, *names: str) -> str:
    """``join(root, *names)`` for names that come from users (plan, model, tokenizer, what-if, chart names).

    Rejects absolute names, ``..`` segments, backslashes and NUL bytes, so the result always lies under ``root``.
    """
    for name in names:
        name = str(name)
        segments = name.split("/")
        if name.startswith(("/", "~")) or ".." in segments or "\\" in name or "\x00" in name:
            raise UnsafePathError(
                f"{name!r} is not a safe name inside {root}: use a relative name without '..', a leading '/' or '~'"
            )
    return join(str(root), *(str(n) for n in names))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` only if the block succeeds.

    A crash or an exception (e.g. disk full) leaves no file at ``path`` and removes the temporary one, so a later stage
    never reads a half-written output as complete.
    """
    fs, p = fs_and_path(path)
    parent = p.rsplit("/", 1)[0] if "/" in p else "."
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex[:12]}-{p.rsplit('/', 1)[-1]}"
    try:
        with fs.open(tmp, mode, **kwargs) as f:
            yield f
            if hasattr(f, "flush"):
                f.flush()
            if hasattr(f, "fileno"):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    os.fsync(f.fileno())
        fs.mv(tmp, p)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (local or URL)."""
    fs, p = fs_and_path(path)
    with fs.open(p, "r", encoding="utf-8") as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    fs, p = fs_and_path(path)
    h = hashlib.sha256()
    with fs.open(p, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_obj(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (configs, input hash lists)."""
    data = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(data).hexdigest()[:16]


class RunDir:
    """Paths and completion markers of one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root).rstrip("/")
        self.fs, self._path = fs_and_path(self.root)

    def __repr__(self) -> str:
        return f"RunDir({self.root!r})"

    def path(self, *parts: str) -> str:
        """Path of something inside the run (creating nothing); parts may not escape it (:func:`safe_join`)."""
        return safe_join(self.root, *parts)

    def stage(self, name: str, *parts: str, create: bool = True) -> str:
        """Path of a stage directory (``corpus``, ``signals`` ...) or something in it; created on demand."""
        p = safe_join(self.root, name, *parts)
        if create:
            self.fs.makedirs(join(self.root, name) if parts else p, exist_ok=True)
        return p

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def marker(self, stage: str) -> dict | None:
        """The completion marker of a stage, or None when the stage has not completed."""
        p = self.path(stage, MARKER)
        return read_json(p) if self.fs.exists(p) else None

    def is_done(self, stage: str, inputs_hash: str) -> bool:
        """True when the stage completed with exactly these inputs (config + input file hashes)."""
        m = self.marker(stage)
        return bool(m) and m.get("inputs_hash") == inputs_hash

    def mark_done(self, stage: str, inputs_hash: str, summary: dict | None = None) -> None:
        """Write the completion marker last, after every output of the stage is in place.

        A run killed while writing an earlier marker left its temporary file; it is removed here (only one process
        finishes a stage, so no other writer's temporary marker can be in flight).
        """
        for stale in self.fs.glob(self.path(stage, f".tmp-*-{MARKER}")):
            self.fs.rm(stale)
        write_json(self.path(stage, MARKER), {"stage": stage, "inputs_hash": inputs_hash, "summary": summary or {}})

    def clear_marker(self, stage: str) -> None:
        p = self.path(stage, MARKER)
        if self.fs.exists(p):
            self.fs.rm(p)
