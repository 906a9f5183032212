"""``tokenwise corpus build``: read every configured source into sharded Parquet, a manifest and quarantine files.

The build is a datatrove pipeline step (:class:`CorpusBuildStep`) run by ``LocalPipelineExecutor``:

1. **plan** (driver): expand each source into work items (a file, a catalog domain, a group of modules), assign them
   to ``tasks`` ranks by size (largest first, deterministic). Config + plan hash = the stage's inputs hash.
2. **run** (each rank): delete its own leftovers from an interrupted run, stream its items, write shards
   ``corpus/shard-{local_index * tasks + rank:05d}.parquet`` atomically (temp + rename, zstd), stream bad records to
   ``corpus/quarantine/rank-{rank:05d}.jsonl``, then write ``corpus/stats/rank-{rank:05d}.json``. datatrove writes its
   completion file under ``corpus/logs/completions/`` after that, so a rerun skips finished ranks and redoes the rest
   with the same shard names: nothing is duplicated or lost.
3. **finalize** (driver): sum the per-rank stats with ``+``, write ``corpus/manifest.json``, then the stage marker.

Document ids are unique per rank: a duplicate id is quarantined (``duplicate_id``) and the first occurrence kept. With
``tasks > 1`` a duplicate across ranks is counted in the manifest (``cross_rank_duplicate_ids``) and logged.

**Incremental layout** (``incremental: true``, what the scheduled refresh uses): every work item (a records file, a
catalog domain with all its locales, a group of ~``item_files`` text/stdlib files whose boundaries are hashed from the
paths) has a content address ``item_key`` = hash(source config, read knobs, files, sha256 of each file's bytes). An
item writes its own ``corpus/shard-<key>-NNN.parquet``, ``quarantine/item-<key>.jsonl`` (when it has bad records) and,
last, ``items/<key>.json`` (its stats). A rebuild reads only items without that stats file: unchanged items keep their
shards byte for byte, a new or changed file gives its item a new key (read into new shards), and outputs of items no
longer planned (changed or removed files) are deleted before the manifest is written. The manifest adds
``file_sha256``, ``items`` (key, files, shards) and ``refresh`` (items read/reused, files re-read, added/changed/gone
files). An interrupted build resumes item by item. Ids are unique per item; duplicates across items are counted in
``cross_rank_duplicate_ids``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from loguru import logger
from pydantic import Field, model_validator

from curation.executors import PLACEMENT_FIELDS, ExecutorFields, run_pipeline
from curation.ingest import mo_catalogs, readers, sources
from curation.ingest.readers import Batch, FieldMap, IdSet, ReadOptions
from curation.ingest.sources import STDLIB_EXCLUDE
from tokenwise.config import BaseConfig, load_section
from tokenwise.documents import CORPUS_SCHEMA, Quarantined
from tokenwise.log import kv, track
from tokenwise.rundir import RunDir, atomic_open, hash_obj, read_json, sha256_file, write_json

log = logging.getLogger(__name__)
STAGE = "corpus"
_NAME = r"^[A-Za-z0-9_.-]+$"


class CorpusError(RuntimeError):
    """A corpus build that cannot go on; the message names the path and the fix."""


# ---------------------------------------------------------------- config


class _Source(BaseConfig):
    name: str = Field(..., pattern=_NAME, description="source name: the `source` column and manifest key")
    lang: str | None = Field(None, description="language for documents without one (locale code, e.g. de, pt_BR)")
    optional: bool = Field(False, description="skip this source with a warning when its path is absent")

    def _check_paths(self, paths: list[str]) -> None:
        if self.optional:
            return
        for p in paths:
            if "://" not in p and not glob.glob(os.path.expanduser(p)):
                raise ValueError(
                    f"path {p!r} does not exist; fix the path, or set optional: true to skip it when absent"
                )


class RecordsSource(_Source):
    """JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet files: files, directories or globs."""

    type: Literal["jsonl", "parquet"]
    paths: list[str] = Field(..., min_length=1, description="files, directories (searched recursively) or globs")
    fields: FieldMap = Field(
        default_factory=FieldMap, description="which record keys hold text/id/lang/domain/unit_id"
    )
    domain: str | None = Field(None, description="domain for documents without one (ui, code, docs ...)")

    @model_validator(mode="after")
    def _exists(self) -> RecordsSource:
        self._check_paths(self.paths)
        return self


class HfSource(_Source):
    """``datasets`` data: a ``save_to_disk`` directory (``path``), or local data files through a packaged builder."""

    type: Literal["hf"]
    path: str | None = Field(None, description="directory written by Dataset.save_to_disk / DatasetDict.save_to_disk")
    data_files: list[str] = Field(
        [], description="local data files for datasets.load_dataset(builder, data_files=...)"
    )
    builder: Literal["json", "parquet", "csv", "text"] = Field("json", description="packaged builder for data_files")
    split: str | None = Field(None, description="split of a saved DatasetDict (default: every split)")
    fields: FieldMap = Field(default_factory=FieldMap)
    domain: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> HfSource:
        if (self.path is None) == (not self.data_files):
            raise ValueError("give exactly one of `path` (a save_to_disk directory) or `data_files`")
        self._check_paths([self.path] if self.path else self.data_files)
        return self


class TextDirSource(_Source):
    """A directory of prose: each matching file is one document."""

    type: Literal["text_dir"]
    paths: list[str] = Field(..., min_length=1, description="directories (or single files) of prose")
    patterns: list[str] = Field(["*.md", "*.rst", "*.txt"], description="file globs; add README*.gz, changelog*.gz")
    exclude: list[str] = Field([], description="globs of relative paths to leave out")
    max_files: int | None = Field(None, ge=1, description="cap on files per path (sorted order); trades size for time")
    max_file_bytes: int = Field(1 << 20, ge=1, description="files larger than this are skipped (not records)")
    domain: str | None = Field("docs", description="domain of these documents")

    @model_validator(mode="after")
    def _exists(self) -> TextDirSource:
        self._check_paths(self.paths)
        return self


class GettextSource(_Source):
    """gettext ``.mo`` catalogs: parallel UI text, one unit per English msgid."""

    type: Literal["gettext"]
    name: str = Field("gettext", pattern=_NAME)
    root: str = Field("/usr/share/locale", description="locale root holding <locale>/LC_MESSAGES/<domain>.mo")
    languages: list[str] = Field(["*"], min_length=1, description="locale codes or globs (de, pt_BR, sr@latin, zh_*)")
    catalogs: list[str] = Field(["*"], min_length=1, description="catalog domain globs (coreutils, gtk30, glib*)")
    exclude_catalogs: list[str] = Field([], description="catalog domain globs to leave out")
    max_catalogs: int | None = Field(None, ge=1, description="cap on .mo files (sorted by domain, then locale)")
    min_letters: int = Field(3, ge=1, description="an English msgid needs this many letters outside placeholders")
    min_words: int = Field(1, ge=1, description="...and this many words; 2+ keeps phrases, drops single labels")

    @model_validator(mode="after")
    def _exists(self) -> GettextSource:
        self._check_paths([self.root])
        return self


class StdlibSource(_Source):
    """Python's standard library: whole modules as ``code``, optionally their docstrings as ``docs``."""

    type: Literal["stdlib"]
    name: str = Field("stdlib", pattern=_NAME)
    root: str | None = Field(None, description="stdlib directory (default: sysconfig.get_paths()['stdlib'])")
    max_modules: int | None = Field(400, ge=1, description="cap on modules (sorted by path); trades size for time")
    max_module_bytes: int = Field(200_000, ge=1, description="modules larger than this are skipped (not records)")
    exclude: list[str] = Field(default_factory=lambda: list(_stdlib_exclude()), description="relative path globs")
    code: bool = Field(True, description="emit each module as a `code` document (source <name>)")
    docstrings: bool = Field(True, description="emit docstrings as `docs` documents (source <name>_docstrings)")
    docstring_min_chars: int = Field(80, ge=1, description="shorter docstrings are skipped")

    @model_validator(mode="after")
    def _exists(self) -> StdlibSource:
        self._check_paths([self.root] if self.root else [])
        return self


def _stdlib_exclude() -> list[str]:

    return STDLIB_EXCLUDE


SourceConfig = Annotated[
    RecordsSource | HfSource | TextDirSource | GettextSource | StdlibSource, Field(discriminator="type")
]


class CorpusConfig(ExecutorFields):
    """The ``corpus:`` section: where text comes from and how it is sharded."""

    sources: list[SourceConfig] = Field(..., min_length=1, description="inputs, each with a unique name")
    max_doc_bytes: int = Field(8 << 20, ge=1024, description="bigger records are quarantined as too_large")
    block_bytes: int = Field(1 << 20, ge=1 << 16, description="JSONL read block, parsed in one call: more = fewer "
                             "calls, more memory (bench/ingest.py: 1 MiB parses as fast as 4 MiB, with less memory)")
    shard_bytes: int = Field(128 << 20, ge=1 << 10, description="uncompressed text per shard before a new one")
    row_group_bytes: int = Field(16 << 20, ge=1 << 10, description="text buffered per Parquet row group")
    compression: Literal["zstd", "snappy", "none"] = Field("zstd", description="Parquet codec")
    compression_level: int = Field(3, ge=1, le=19, description="zstd level: higher = smaller, slower")
    tasks: int = Field(1, ge=1, le=100_000, description="ranks the work is split into (shard names depend on it)")
    workers: int = Field(1, ge=1, le=1024, description="ranks run at once (processes locally, Ray actors on Ray)")
    incremental: bool = Field(
        False,
        description="rebuilds keep the documents of items (files, catalogs, module groups) whose content hash is "
        "unchanged and read only new/changed ones; shards are named shard-<item hash>-NNN (content-addressed); "
        "false: one rank-numbered layout rebuilt from scratch on any change",
    )
    item_files: int = Field(
        16,
        ge=1,
        le=100_000,
        description="incremental: text/stdlib files per item (about; boundaries hashed from paths, so an added file "
        "changes only its own item); 1 = exactly the changed files are reread, more = fewer, larger shards",
    )
    start_method: Literal["auto", "fork", "spawn", "forkserver"] = Field(
        "auto",
        description="workers>1: forkserver is safe when the calling process already runs threads (polars, torch: a "
        "fork then deadlocks in their thread pools); fork starts faster (no re-imports: ~2 s less per build); auto "
        "= fork when no Python thread and no native pool has started in this process, else forkserver",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CorpusConfig:
        names = Counter(s.name for s in self.sources)
        dup = [n for n, c in names.items() if c > 1]
        if dup:
            raise ValueError(f"source names must be unique; {dup} appear more than once (set `name:` on each)")
        return self


# ---------------------------------------------------------------- plan


@dataclass
class WorkItem:
    """One unit of work: a kind, the source it belongs to, what to read and roughly how many bytes."""

    source: int
    kind: str
    files: list[tuple[str, str]]
    size: int
    domain: str | None = None


def plan(cfg: CorpusConfig) -> list[WorkItem]:
    """Expand sources into work items in a deterministic order; a missing required path is a CorpusError."""
    items: list[WorkItem] = []
    group = cfg.item_files if cfg.incremental else None
    for i, src in enumerate(cfg.sources):
        new = list(_plan_source(i, src, group))
        if not new:
            where = getattr(src, "paths", None) or getattr(src, "root", None) or getattr(src, "path", None)
            if not src.optional:
                raise CorpusError(f"source {src.name!r}: nothing to read under {where}; fix the path/patterns or "
                                  "set optional: true")  # fmt: skip
            log.warning(kv(stage=STAGE, source=src.name, skipped="nothing to read (optional)", where=where))
        items.extend(new)
    return items


def _size(path: str) -> int:
    with contextlib.suppress(OSError):
        return os.path.getsize(path)
    return 0


def _expand(paths: list[str], suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for p in paths:
        matches = sorted(glob.glob(os.path.expanduser(p))) or []
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                for f in sorted(mp.rglob("*")):
                    if not f.is_dir() and f.name.endswith(suffixes):  # FIFOs, dangling links: quarantined
                        out[str(f)] = f.relative_to(mp).as_posix()
            else:
                out[str(mp)] = mp.name
    return sorted(out.items())


def _chunks(files: list[tuple[str, str]], n: int) -> Iterator[list[tuple[str, str]]]:
    for k in range(0, len(files), n):
        yield files[k : k + n]


def _stable_chunks(files: list[tuple[str, str]], n: int) -> Iterator[list[tuple[str, str]]]:
    """Groups of about ``n`` files whose boundaries depend only on each file's relative path (content-defined
    chunking): adding, removing or changing one file changes only the group it falls in."""
    cur: list[tuple[str, str]] = []
    for f in files:
        cur.append(f)
        if n <= 1 or int(hashlib.sha256(f[1].encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % n == 0:
            yield cur
            cur = []
    if cur:
        yield cur


def _plan_source(i: int, src: Any, group: int | None = None) -> Iterator[WorkItem]:

    if isinstance(src, RecordsSource):
        suffixes = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".ndjson") if src.type == "jsonl" else (".parquet",)
        for path, label in _expand(src.paths, suffixes):
            yield WorkItem(i, src.type, [(path, label)], _size(path))
    elif isinstance(src, HfSource):
        files = [(src.path, Path(src.path).name)] if src.path else [(p, Path(p).name) for p in src.data_files]
        yield WorkItem(i, "hf_disk" if src.path else "hf_files", files, sum(_size(p) for p, _ in files))
    elif isinstance(src, TextDirSource):
        for root in src.paths:
            if not os.path.exists(root):
                continue
            files = sources.select_files(root, src.patterns, src.exclude, src.max_file_bytes, src.max_files)
            for chunk in _stable_chunks(files, group) if group else _chunks(files, 256):
                yield WorkItem(i, "text", chunk, sum(_size(p) for p, _ in chunk))
    elif isinstance(src, GettextSource):
        if os.path.isdir(src.root):
            found = mo_catalogs.find_catalogs(src.root, src.languages, src.catalogs, src.exclude_catalogs,
                                              src.max_catalogs)  # fmt: skip
            for dom, cats in found.items():
                yield WorkItem(i, "gettext", cats, sum(_size(p) for _, p in cats), domain=dom)
    elif isinstance(src, StdlibSource):
        root = src.root or sources.stdlib_root()
        files = sources.select_files(root, ["*.py"], src.exclude, src.max_module_bytes, src.max_modules)
        for chunk in _stable_chunks(files, group) if group else _chunks(files, 64):
            size = sum(_size(p) for p, _ in chunk)
            if src.code:
                yield WorkItem(i, "code", chunk, size)
            if src.docstrings:
                yield WorkItem(i, "docstrings", chunk, size // 4)


def assign(items: list[WorkItem], tasks: int) -> list[list[int]]:
    """Item indices per rank: largest first to the least loaded rank (ties: lowest rank), each list in plan order."""
    load = [0] * tasks
    ranks: list[list[int]] = [[] for _ in range(tasks)]
    for idx in sorted(range(len(items)), key=lambda k: (-items[k].size, k)):
        r = min(range(tasks), key=lambda t: (load[t], t))
        ranks[r].append(idx)
        load[r] += max(1, items[idx].size)
    return [sorted(r) for r in ranks]


# ---------------------------------------------------------------- stats


@dataclass
class CorpusStats:
    """Mergeable build stats (``a + b``); ``read == kept + quarantined`` for every file and in total."""

    read: int = 0
    kept: int = 0
    quarantined: int = 0
    bytes: int = 0
    reasons: Counter = field(default_factory=Counter)
    skipped: dict[str, Counter] = field(default_factory=dict)
    by: dict[str, dict[str, Counter]] = field(default_factory=lambda: {"lang": {}, "source": {}, "domain": {}})
    files: dict[str, Counter] = field(default_factory=dict)
    shards: dict[str, dict] = field(default_factory=dict)

    def __add__(self, other: CorpusStats) -> CorpusStats:
        out = CorpusStats(self.read + other.read, self.kept + other.kept, self.quarantined + other.quarantined,
                          self.bytes + other.bytes, self.reasons + other.reasons)  # fmt: skip
        out.skipped = _merge(self.skipped, other.skipped)
        out.by = {k: _merge(self.by.get(k, {}), other.by.get(k, {})) for k in ("lang", "source", "domain")}
        out.files = _merge(self.files, other.files)
        out.shards = {**self.shards, **other.shards}
        return out

    def add_table(self, file: str, t: pa.Table) -> None:
        """Count a batch of kept documents (per-group counts come from :meth:`add_groups` on bigger tables)."""
        n, b = t.num_rows, pc.sum(pc.binary_length(t.column("text"))).as_py() or 0
        self.read, self.kept, self.bytes = self.read + n, self.kept + n, self.bytes + b
        self.files.setdefault(file, Counter()).update(read=n, kept=n)

    def add_groups(self, t: pa.Table) -> None:
        """Documents and bytes per language, source and domain of a table (nulls as ``und`` / ``none``)."""
        aug = pa.table({k: pc.fill_null(t.column(k), "und" if k == "lang" else "none") for k in ("lang", "domain")}
                       | {"source": t.column("source"), "b": pc.binary_length(t.column("text"))})  # fmt: skip
        for key in ("lang", "source", "domain"):
            # one thread: groups in first-seen order (with threads the order of keys in the stats file varied per run)
            for row in aug.group_by(key, use_threads=False).aggregate([("b", "sum"), ("b", "count")]).to_pylist():
                self.by[key].setdefault(row[key], Counter()).update(documents=row["b_count"], bytes=row["b_sum"] or 0)

    def add_quarantined(self, q: Quarantined) -> None:
        self.read, self.quarantined = self.read + 1, self.quarantined + 1
        self.reasons[q.reason] += 1
        self.files.setdefault(q.file, Counter()).update(read=1, quarantined=1)

    def to_json(self) -> dict:
        return {"read": self.read, "kept": self.kept, "quarantined": self.quarantined, "bytes": self.bytes,
                "reasons": dict(self.reasons), "skipped": self.skipped, "by": self.by, "files": self.files,
                "shards": self.shards}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> CorpusStats:
        s = cls(d["read"], d["kept"], d["quarantined"], d["bytes"], Counter(d["reasons"]))
        s.skipped = {k: Counter(v) for k, v in d["skipped"].items()}
        s.by = {k: {g: Counter(c) for g, c in v.items()} for k, v in d["by"].items()}
        s.files = {k: Counter(v) for k, v in d["files"].items()}
        s.shards = d["shards"]
        return s


def _merge(a: dict[str, Counter], b: dict[str, Counter]) -> dict[str, Counter]:
    out = {k: Counter(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, Counter()).update(v)
    return out


# ---------------------------------------------------------------- shard writer


class ShardWriter:
    """A rank's shard files: row groups of ~row_group_bytes, a new shard every ~shard_bytes, renamed on close.

    Row groups are compressed and written on one background thread (pyarrow releases the GIL while it compresses), so
    the next blocks are parsed meanwhile; at most one row group waits for it (memory stays ~2 row groups). The
    tables, their order and so the shard bytes are the same as writing inline; an error on the thread is raised by
    the next ``add``/``close``.
    """

    def __init__(self, rd: RunDir, cfg: CorpusConfig, rank: int, world_size: int, stats: CorpusStats,
                 prefix: str | None = None):  # fmt: skip
        self.rd, self.cfg, self.rank, self.world, self.prefix = rd, cfg, rank, world_size, prefix
        self.stats, self.index = stats, 0
        self._buf: list[pa.Table] = []
        self._buf_bytes = self._shard_bytes = self._rows = 0
        self._stack: contextlib.ExitStack | None = None
        self._writer: Any = None
        self._name = ""
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def add(self, t: pa.Table) -> None:
        self._buf.append(t)
        self._buf_bytes += t.column("text").nbytes
        if self._buf_bytes >= self.cfg.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        table = pa.concat_tables(self._buf)
        self._buf, self._buf_bytes = [], 0
        self._wait()  # one row group in flight: bounded memory, and row groups stay in order
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenwise-shard-writer")
        self._pending = self._pool.submit(self._write, table)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _write(self, table: pa.Table) -> None:
        """Writer thread: per-group stats, then the row group (a new shard file when none is open)."""
        self.stats.add_groups(table)  # only this thread touches stats.by and stats.shards until close()
        if self._writer is None:
            self._name = (f"shard-{self.prefix}-{self.index:03d}.parquet" if self.prefix
                          else f"shard-{self.index * self.world + self.rank:05d}.parquet")  # fmt: skip
            self._stack = contextlib.ExitStack()
            f = self._stack.enter_context(atomic_open(self.rd.stage(STAGE, self._name), "wb"))
            codec = None if self.cfg.compression == "none" else self.cfg.compression
            level = self.cfg.compression_level if codec == "zstd" else None
            small = _SMALL_COLUMNS
            self._writer = pq.ParquetWriter(f, CORPUS_SCHEMA, compression=codec, compression_level=level,
                                            use_dictionary=small, write_statistics=small)  # fmt: skip
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._rows += table.num_rows
        self._shard_bytes += table.column("text").nbytes
        if self._shard_bytes >= self.cfg.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        self._writer.close()
        self._stack.close()
        path = self.rd.stage(STAGE, self._name)
        self.stats.shards[self._name] = {
            "rows": self._rows,
            "sha256": sha256_file(path),
            "bytes": _fsize(self.rd, path),
        }
        log.info(kv(stage=STAGE, rank=self.rank, shard=self._name, rows=self._rows))
        self._writer, self._stack, self.index = None, None, self.index + 1
        self._rows = self._shard_bytes = 0

    def _shutdown(self) -> None:
        """Stop the writer thread (a live thread would make later stages fork less safely: see fork_is_safe)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def close(self) -> None:
        try:
            self._flush()
            self._wait()
            if self._writer is not None:
                self._close_shard()
        finally:
            self._shutdown()

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self._wait()
        self._shutdown()
        if self._writer is not None:  # closed here, not by the garbage collector on a removed temp file
            with contextlib.suppress(Exception):
                self._writer.close()
        if self._stack is not None:
            with contextlib.suppress(Exception):
                self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


# dictionary pages and min/max statistics only for the columns with few distinct short values: for text and ids the
# dictionary is abandoned after its first page, and min/max of whole documents is read by nothing (same file size)
_SMALL_COLUMNS = ["source", "lang", "domain", "unit_id"]


def _fsize(rd: RunDir, path: str) -> int:
    return int(rd.fs.size(path))


# ---------------------------------------------------------------- the datatrove step


def _import_step_base() -> type:
    from datatrove.pipeline.base import PipelineStep  # heavy: deferred until used

    return PipelineStep


class CorpusBuildStep(_import_step_base()):
    """datatrove step: one rank reads its work items and writes shards, quarantine and stats (no documents flow on)."""

    name = "tokenwise corpus build"
    type = "📖 - READER"

    def __init__(self, cfg: dict, items: list[WorkItem], ranks: list[list[int]], run: str,
                 keys: list[str] | None = None):  # fmt: skip
        super().__init__()
        self.cfg, self.items, self.ranks, self.run_root, self.keys = cfg, items, ranks, run, keys

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> None:
        cfg, rd = CorpusConfig.model_validate(self.cfg), RunDir(self.run_root)
        _quiet_task_console(rd, rank)
        if self.keys is not None:
            self._run_items(cfg, rd, rank, world_size)
            return
        _clean_rank(rd, rank, world_size)
        stats, ids = CorpusStats(), IdSet()
        writer = ShardWriter(rd, cfg, rank, world_size, stats)
        try:
            with atomic_open(rd.stage(STAGE, "quarantine", f"rank-{rank:05d}.jsonl"), "w", encoding="utf-8") as qf:
                todo = self.ranks[rank] if rank < len(self.ranks) else []
                for idx in track(todo, f"corpus rank {rank}", total=len(todo)):
                    self._run_item(cfg, self.items[idx], ids, stats, writer, qf)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        self.stat_update("documents", value=stats.kept)
        self.stat_update("quarantined", value=stats.quarantined)
        write_json(rd.stage(STAGE, "stats", f"rank-{rank:05d}.json"), stats.to_json())
        log.info(kv(stage=STAGE, rank=rank, read=stats.read, kept=stats.kept, quarantined=stats.quarantined))

    def _run_items(self, cfg: CorpusConfig, rd: RunDir, rank: int, world_size: int) -> None:
        """Incremental layout: each item gets its own shards, quarantine file and stats file (written last)."""
        todo = self.ranks[rank] if rank < len(self.ranks) else []
        read = kept = 0
        for idx in track(todo, f"corpus rank {rank}", total=len(todo)):
            key = self.keys[idx]
            if item_done(rd, key):  # finished by an interrupted attempt of this build
                continue
            _clean_item(rd, key)
            stats = CorpusStats()
            writer = ShardWriter(rd, cfg, rank, world_size, stats, prefix=key)
            qpath = rd.stage(STAGE, "quarantine", f"item-{key}.jsonl")
            try:
                with atomic_open(qpath, "w", encoding="utf-8") as qf:
                    self._run_item(cfg, self.items[idx], IdSet(), stats, writer, qf)
                writer.close()
            except BaseException:
                writer.abort()
                raise
            if not stats.quarantined:
                rd.fs.rm(qpath)
            write_json(rd.stage(STAGE, "items", f"{key}.json"), {"key": key, "stats": stats.to_json()})
            read, kept = read + stats.read, kept + stats.kept
        self.stat_update("documents", value=kept)
        log.info(kv(stage=STAGE, rank=rank, items=len(todo), read=read, kept=kept))

    def _run_item(self, cfg: CorpusConfig, item: WorkItem, ids: IdSet, stats: CorpusStats, writer: ShardWriter,
                  qf: Any) -> None:  # fmt: skip
        src = cfg.sources[item.source]
        skipped = stats.skipped.setdefault(src.name, Counter())
        for file, batch in _iter_item(cfg, src, item, ids, skipped):
            if isinstance(batch, Quarantined):
                stats.add_quarantined(batch)
                qf.write(json.dumps({"source": src.name, **batch.row()}, ensure_ascii=False) + "\n")
            elif batch.num_rows:
                stats.add_table(file, batch)
                writer.add(batch)


_ADAPTIVE: dict = {}  # per-process parse strategy shared by a rank's JSONL files (see readers._parse_block)


def _opts(cfg: CorpusConfig, src: Any, ids: IdSet, **kw: Any) -> ReadOptions:
    return ReadOptions(source=kw.pop("source", src.name), fields=getattr(src, "fields", FieldMap()), lang=src.lang,
                       domain=kw.pop("domain", getattr(src, "domain", None)), max_doc_bytes=cfg.max_doc_bytes,
                       block_bytes=cfg.block_bytes, seen_ids=ids, adaptive=_ADAPTIVE, **kw)  # fmt: skip


def _iter_item(
    cfg: CorpusConfig, src: Any, item: WorkItem, ids: IdSet, skipped: Counter
) -> Iterator[tuple[str, Batch]]:
    """(file, batch) pairs of one work item; the file is what per-file stats are keyed by."""
    if item.kind in ("jsonl", "parquet"):
        (path, label), = item.files  # fmt: skip
        fn = readers.iter_jsonl if item.kind == "jsonl" else readers.iter_parquet
        for b in fn(path, _opts(cfg, src, ids), label):
            yield path, b
    elif item.kind == "hf_disk":
        for b in readers.iter_hf_disk(src.path, _opts(cfg, src, ids), src.split):
            yield src.path, b
    elif item.kind == "hf_files":
        for b in readers.iter_hf_files([p for p, _ in item.files], src.builder, _opts(cfg, src, ids)):
            yield ",".join(p for p, _ in item.files), b
    elif item.kind == "text":
        opts = _opts(cfg, src, ids)
        for path, label in item.files:
            yield path, readers.read_text_file(path, opts, label)
    elif item.kind == "code":
        opts = _opts(cfg, src, ids, domain="code")
        for path, label in item.files:
            yield path, readers.read_text_file(path, opts, label)
    elif item.kind == "docstrings":
        opts = _opts(cfg, src, ids, source=f"{src.name}_docstrings", domain="docs", id_prefix=f"{src.name}_docstrings")
        for path, label in item.files:
            for b in sources.iter_docstrings([(path, label)], opts, src.docstring_min_chars, skipped):
                yield path, b
    elif item.kind == "gettext":
        opts = _opts(cfg, src, ids, domain="ui")
        emitted: set[str] = set()
        for loc, path in item.files:
            for b in mo_catalogs.iter_catalog(item.domain, loc, path, emitted, opts, src.min_letters, src.min_words,
                                              skipped):  # fmt: skip
                yield path, b
    else:  # pragma: no cover - plan() only makes the kinds above
        raise AssertionError(item.kind)


def _quiet_task_console(rd: RunDir, rank: int) -> None:
    """datatrove's task logger prints INFO to the console; keep its task log file, show warnings and up only."""


    if "://" in rd.root:  # remote run dir: leave datatrove's sinks alone
        return
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("TOKENWISE_DATATROVE_LEVEL", "WARNING"))
    logger.add(rd.path(STAGE, "logs", "logs", f"task_{rank:05d}.log"), level="DEBUG", mode="a")


_SHARD = re.compile(r"shard-(\d+)\.parquet$")


def _clean_rank(rd: RunDir, rank: int, world_size: int) -> None:
    """Remove what an interrupted run of this rank left behind (its shards, temp files, quarantine, stats)."""
    base = rd.stage(STAGE)
    for path in rd.fs.find(base, maxdepth=None):
        name = path.rsplit("/", 1)[-1]
        m = _SHARD.search(name)
        mine = (m and int(m.group(1)) % world_size == rank) or f"rank-{rank:05d}." in name
        if mine and "/logs/" not in path:
            rd.fs.rm(path)


# ---------------------------------------------------------------- build


def inputs_hash(cfg: CorpusConfig, items: list[WorkItem]) -> str:
    """Hash of the config and every planned input (path, size, mtime)."""
    files = [(p, _size(p), _mtime(p)) for it in items for f in it.files for p in f if os.path.sep in p]
    return hash_obj({"config": cfg.model_dump(mode="json", exclude=PLACEMENT_FIELDS), "files": files})


def _mtime(path: str) -> float:
    with contextlib.suppress(OSError):
        return os.path.getmtime(path)
    return 0.0


def build(cfg: CorpusConfig, run: str, force: bool = False) -> dict:
    """Build the corpus of a run directory; returns the manifest (skips when the stage marker matches)."""
    rd = RunDir(run)
    t0 = time.perf_counter()
    items = plan(cfg)
    h = inputs_hash(cfg, items)
    if not force and rd.is_done(STAGE, h):
        log.info(kv(stage=STAGE, skipped="up to date", run=run))
        return read_json(rd.path(STAGE, "manifest.json"))
    _reset_if_changed(rd, h, force, "items" if cfg.incremental else "ranks")
    if cfg.incremental:
        manifest = _build_items(cfg, items, rd, h, t0)
    else:
        _execute(cfg, items, rd)
        manifest = finalize(cfg, rd, h, time.perf_counter() - t0)
    rd.mark_done(STAGE, h, {k: manifest[k] for k in ("documents", "bytes", "records")})
    return manifest


def _reset_if_changed(rd: RunDir, h: str, force: bool, layout: str = "ranks") -> None:
    """A build with other inputs (config, files, tasks) starts from scratch: old shards must not mix with new ones.

    The incremental (``items``) layout keeps its content-addressed shards across input changes; switching layouts
    starts from scratch."""
    ident = rd.path(STAGE, "_build.json")
    old = read_json(ident) if rd.fs.exists(ident) else None
    changed = old and (old.get("layout", "ranks") != layout or (layout == "ranks" and old.get("inputs_hash") != h))
    if force or changed:
        log.info(kv(stage=STAGE, reset="inputs changed" if not force else "forced", run=rd.root))
        rd.fs.rm(rd.path(STAGE), recursive=True)
    if rd.fs.exists(rd.path(STAGE)):
        rd.clear_marker(STAGE)
        for p in rd.fs.find(rd.path(STAGE)):  # temp files of a killed run (manifest, stats); no rank runs yet
            if p.rsplit("/", 1)[-1].startswith(".tmp-") and "/logs/" not in p:
                rd.fs.rm(p)
    write_json(ident, {"inputs_hash": h, "layout": layout})


def _execute(cfg: CorpusConfig, items: list[WorkItem], rd: RunDir, keys: list[str] | None = None) -> None:
    ranks = assign(items, cfg.tasks)
    step = CorpusBuildStep(cfg.model_dump(mode="json"), items, ranks, rd.root, keys)
    log.info(kv(stage=STAGE, items=len(items), tasks=cfg.tasks, workers=cfg.workers, run=rd.root))
    # items layout: resume is per item (items/<key>.json), and each build assigns a different set of items to ranks,
    # so datatrove's per-rank completion files must not skip a rank
    with _quiet_datatrove():
        run_pipeline([step], cfg, tasks=cfg.tasks, workers=cfg.workers, start_method=cfg.start_method,
                     logging_dir=rd.path(STAGE, "logs"), skip_completed=keys is None, stage=STAGE)  # fmt: skip


# ---------------------------------------------------------------- incremental (items) layout

_ITEM_FORMAT = 1
_READ_KNOBS = {"max_doc_bytes", "shard_bytes", "row_group_bytes", "compression", "compression_level"}


def item_paths(item: WorkItem) -> list[str]:
    """The input paths of a work item (gettext items list (locale, path) pairs, the others (path, label))."""
    return [f[1] if item.kind == "gettext" else f[0] for f in item.files]


def content_sha256(path: str) -> str:
    """sha256 of a file's bytes; of (relative path, sha256) of every file for a directory (``save_to_disk``);
    a placeholder for what cannot be hashed (FIFOs, vanished files), which the reader quarantines."""
    if "://" not in path:
        if os.path.isdir(path):
            h = hashlib.sha256()
            for f in sorted(Path(path).rglob("*")):
                if f.is_file():
                    h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
            return h.hexdigest()
        if not os.path.isfile(path):
            return "unhashable"
    try:
        return sha256_file(path)
    except OSError:
        return "unhashable"


def item_key(cfg: CorpusConfig, item: WorkItem, shas: list[str]) -> str:
    """Content address of an item: how it is read (source config, read knobs) and the bytes it reads."""
    return hash_obj({"v": _ITEM_FORMAT, "source": cfg.sources[item.source].model_dump(mode="json"),
                     "read": cfg.model_dump(mode="json", include=_READ_KNOBS), "kind": item.kind,
                     "domain": item.domain, "files": item.files, "sha256": shas})  # fmt: skip


def item_done(rd: RunDir, key: str) -> bool:
    """Whether an item's stats file exists and every shard it lists is in place."""
    p = rd.path(STAGE, "items", f"{key}.json")
    if not rd.fs.exists(p):
        return False
    return all(rd.fs.exists(rd.path(STAGE, s)) for s in read_json(p)["stats"]["shards"])


def _clean_item(rd: RunDir, key: str) -> None:
    """Remove what an interrupted attempt left of one item (shards, temp files, quarantine, stats)."""
    for pat in (f"shard-{key}-*", f".tmp-*-shard-{key}-*", f"quarantine/*item-{key}.jsonl", f"items/*{key}.json"):
        for p in rd.fs.glob(rd.path(STAGE, pat)):
            rd.fs.rm(p)


def _build_items(cfg: CorpusConfig, items: list[WorkItem], rd: RunDir, h: str, t0: float) -> dict:
    """Incremental build: read only items without finished outputs, drop outputs of items no longer planned."""
    shas = [[content_sha256(p) for p in item_paths(it)] for it in items]
    keys = [item_key(cfg, it, s) for it, s in zip(items, shas, strict=True)]
    if len(set(keys)) != len(keys):  # pragma: no cover - plan() never repeats (source, kind, files)
        raise CorpusError("two work items hash to the same key; report this with the corpus config")
    todo = [i for i, k in enumerate(keys) if not item_done(rd, k)]
    if todo:
        _execute(cfg, [items[i] for i in todo], rd, [keys[i] for i in todo])
    total, now, fresh = CorpusStats(), CorpusStats(), set(todo)
    for i, k in enumerate(keys):
        p = rd.path(STAGE, "items", f"{k}.json")
        if not item_done(rd, k):
            raise CorpusError(f"item {k} ({item_paths(items[i])[0]} ...) of the corpus build did not finish "
                              f"({p} missing); rerun to resume")  # fmt: skip
        st = CorpusStats.from_json(read_json(p)["stats"])
        total = total + st
        if i in fresh:
            now = now + st
    if total.kept == 0:
        raise CorpusError(f"no documents could be read from any source ({', '.join(s.name for s in cfg.sources)}); "
                          f"{total.quarantined} records were quarantined, see {rd.path(STAGE, 'quarantine')}; "
                          "check the paths and the `fields:` mapping")  # fmt: skip
    _drop_stale(rd, set(keys), set(total.shards))
    old_path = rd.path(STAGE, "manifest.json")
    old = read_json(old_path).get("file_sha256", {}) if rd.fs.exists(old_path) else {}
    sha = {p: s for it, ss in zip(items, shas, strict=True) for p, s in zip(item_paths(it), ss, strict=True)}
    manifest = _manifest(cfg, rd, h, total, time.perf_counter() - t0)
    manifest["file_sha256"] = dict(sorted(sha.items()))
    manifest["items"] = [
        {"key": k, "source": cfg.sources[it.source].name, "kind": it.kind, "domain": it.domain,
         "files": item_paths(it), "shards": sorted(CorpusStats.from_json(read_json(
             rd.path(STAGE, "items", f"{k}.json"))["stats"]).shards)}
        for it, k in zip(items, keys, strict=True)
    ]  # fmt: skip
    manifest["refresh"] = {
        "items": len(keys),
        "items_read": len(todo),
        "items_reused": len(keys) - len(todo),
        "files_reread": sorted({p for i in todo for p in item_paths(items[i])}),
        "records_read": now.read,
        "documents_read": now.kept,
        "files_read": {f: c["read"] for f, c in sorted(now.files.items())},
        "files_added": sorted(set(sha) - set(old)),
        "files_changed": sorted(p for p in set(sha) & set(old) if sha[p] != old[p]),
        "files_removed": sorted(set(old) - set(sha)),
    }
    write_json(old_path, manifest)
    log.info(kv(stage=STAGE, items=len(keys), read=len(todo), reused=len(keys) - len(todo), run=rd.root))
    return manifest


def _drop_stale(rd: RunDir, keys: set[str], shards: set[str]) -> None:
    """Delete shards, quarantine and stats files of items that are no longer planned (and old rank-layout files)."""
    base = rd.path(STAGE)
    for p in rd.fs.glob(f"{base}/shard-*.parquet"):
        if p.rsplit("/", 1)[-1] not in shards:
            rd.fs.rm(p)
    for sub, prefix, suffix in (("quarantine", "item-", ".jsonl"), ("items", "", ".json")):
        for p in rd.fs.glob(f"{base}/{sub}/*"):
            name = p.rsplit("/", 1)[-1]
            if not (name.startswith(prefix) and name.endswith(suffix) and name[len(prefix) : -len(suffix)] in keys):
                rd.fs.rm(p)
    for p in rd.fs.glob(f"{base}/stats/rank-*.json"):
        rd.fs.rm(p)


@contextlib.contextmanager
def _quiet_datatrove() -> Iterator[None]:
    """datatrove logs through loguru (per-task files under corpus/logs/); the console shows warnings and up."""


    level = os.environ.get("TOKENWISE_DATATROVE_LEVEL", "WARNING")
    logger.remove()
    logger.add(sys.stderr, level=level)
    try:
        yield
    finally:  # datatrove's task logger replaces the sinks; leave one console sink at our level
        logger.remove()
        logger.add(sys.stderr, level=level)


def finalize(cfg: CorpusConfig, rd: RunDir, h: str, seconds: float) -> dict:
    """Merge per-rank stats into the manifest (written atomically); a fatal CorpusError when nothing was kept."""
    total = CorpusStats()
    for rank in range(cfg.tasks):
        p = rd.path(STAGE, "stats", f"rank-{rank:05d}.json")
        if not rd.fs.exists(p):
            raise CorpusError(f"rank {rank} of the corpus build did not finish ({p} missing); rerun to resume")
        total = total + CorpusStats.from_json(read_json(p))
    assert total.read == total.kept + total.quarantined, "reader accounting broke"
    if total.kept == 0:
        raise CorpusError(f"no documents could be read from any source ({', '.join(s.name for s in cfg.sources)}); "
                          f"{total.quarantined} records were quarantined, see {rd.path(STAGE, 'quarantine')}; "
                          "check the paths and the `fields:` mapping")  # fmt: skip
    manifest = _manifest(cfg, rd, h, total, seconds)
    write_json(rd.path(STAGE, "manifest.json"), manifest)
    return manifest


def _cross_rank_duplicates(rd: RunDir, shards: list[str], tasks: int) -> int:
    if tasks == 1:  # one rank (rank layout) quarantines every duplicate id
        return 0

    ids, dups = IdSet(), 0
    for s in shards:
        with rd.fs.open(rd.path(STAGE, s), "rb") as f:  # ParquetFile: pq.read_table imports pyarrow.dataset (~15 ms)
            col = pq.ParquetFile(f).read(columns=["id"]).column("id").to_pylist()
        dups += int(ids.add(col).sum())
    if dups:
        log.warning(kv(stage=STAGE, cross_rank_duplicate_ids=dups))
    return dups


def _manifest(cfg: CorpusConfig, rd: RunDir, h: str, total: CorpusStats, seconds: float) -> dict:
    shards = sorted(total.shards)
    return {
        "stage": STAGE,
        "documents": total.kept,
        "bytes": total.bytes,
        "records": {"read": total.read, "kept": total.kept, "quarantined": total.quarantined},
        "quarantine_reasons": dict(sorted(total.reasons.items())),
        "skipped": {k: dict(v) for k, v in total.skipped.items() if v},
        "by_lang": _sorted(total.by["lang"]),
        "by_source": _sorted(total.by["source"]),
        "by_domain": _sorted(total.by["domain"]),
        "shards": [{"name": s, **total.shards[s]} for s in shards],
        "files": {
            f: {"read": c["read"], "kept": c["kept"], "quarantined": c["quarantined"]}
            for f, c in sorted(total.files.items())
        },  # fmt: skip
        "quarantine_files": _quarantine_files(cfg, rd, total),
        # items layout: ids are unique per item; duplicates across items are counted here (as across ranks)
        "cross_rank_duplicate_ids": _cross_rank_duplicates(rd, shards, 0 if cfg.incremental else cfg.tasks),
        "config_hash": hash_obj(cfg.model_dump(mode="json")),
        "inputs_hash": h,
        "tasks": cfg.tasks,
        "seconds": round(seconds, 2),
    }


def _quarantine_files(cfg: CorpusConfig, rd: RunDir, total: CorpusStats) -> list[str]:
    if not cfg.incremental:
        return [f"quarantine/rank-{r:05d}.jsonl" for r in range(cfg.tasks)]
    found = rd.fs.glob(rd.path(STAGE, "quarantine", "item-*.jsonl"))
    return sorted(f"quarantine/{p.rsplit('/', 1)[-1]}" for p in found)


def _sorted(groups: dict[str, Counter]) -> dict[str, dict]:
    return {k: {"documents": v["documents"], "bytes": v["bytes"]} for k, v in sorted(groups.items())}


def summary(manifest: dict) -> str:
    """One line: documents, MB, languages, shards, quarantined."""
    r = manifest["records"]
    langs = len(manifest["by_lang"])
    return (f"{manifest['documents']} documents, {manifest['bytes'] / 1e6:.1f} MB, {langs} languages,"
            f" {len(manifest['shards'])} shards; {r['quarantined']} of {r['read']} records quarantined")  # fmt: skip


def build_from_config(config_path: str, run_dir: str) -> str:
    """Demo stage: build the corpus from the ``corpus:`` section; returns the one-line summary."""
    cfg = load_section(config_path, STAGE, CorpusConfig)
    return summary(build(cfg, run_dir))
