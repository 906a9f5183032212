"""Streaming readers for JSONL (plain, .gz, .zst), Parquet, text directories and ``datasets`` data, never raising.

Every reader yields **batches**: a ``pyarrow.Table`` in :data:`~tokenwise.documents.CORPUS_SCHEMA` holding documents
that passed every check, or a :class:`~tokenwise.documents.Quarantined` record saying where a bad record was and why.
Each input record becomes exactly one document row or one quarantine record, so *records read = kept + quarantined*.
:func:`iter_documents` flattens batches into :class:`~tokenwise.documents.Document` objects for callers that want them.

JSONL is read in bounded byte blocks cut at newlines. Cheap raw checks over the whole block (numpy, one regex) find
the lines a vectorised parse must not see (blank, not ``{...}``, NUL, a mapped key holding a non-string); the other
lines are parsed in one ``polars`` call (which checks JSON syntax and UTF-8; after an invalid-UTF-8 error the bad lines
are located and the parse repeated once). Those lines, and parsed rows that fail a record check, take the exact path
(``json`` per line: exact reason, line number and byte offset); duplicate ids are then decided over all rows of the
block in line order. Only a syntax error no raw check finds sends the block to the old route: ~8 pieces parsed the
same way, recursively, and line by line for the pieces that fail. Memory is bounded by the block size plus
``max_doc_bytes`` whatever the file size; a line longer than ``max_doc_bytes`` is skipped while streaming
(``too_large``) and never held whole.

Quarantine reasons (stable): ``invalid_json invalid_utf8 nul_bytes not_an_object missing_text text_not_string
empty_text bad_field binary_file empty_file too_large duplicate_id truncated_file unreadable_file invalid_parquet
invalid_dataset invalid_mo invalid_python``. Blank lines in JSONL are not records. Duplicate ids are quarantined
(``duplicate_id``): the first occurrence is kept, later ones are not silently renamed, so an id always names one text.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import json
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard
from pydantic import Field

from tokenwise.config import BaseConfig
from tokenwise.documents import CORPUS_COLUMNS, CORPUS_SCHEMA, Document, Quarantined

Batch = pa.Table | Quarantined
REASONS = (
    "invalid_json invalid_utf8 nul_bytes not_an_object missing_text text_not_string empty_text bad_field binary_file"
    " empty_file too_large duplicate_id truncated_file unreadable_file invalid_parquet invalid_dataset invalid_mo"
    " invalid_python"
).split()
_META = ("id", "lang", "domain", "unit_id")
_SNIPPET = 120
_MIN_BISECT_BYTES = 32 << 10
_SPLIT = 8  # pieces per failed block: fewer = fewer parser calls around one bad line, more bytes parsed twice


class FieldMap(BaseConfig):
    """Which record keys hold the document fields (``null`` for a key the data does not have)."""

    text: str = Field("text", min_length=1, description="key holding the document text (required in every record)")
    id: str | None = Field("id", description="key holding the document id; missing ids become <source>:<file>:<line>")
    lang: str | None = Field("lang", description="key holding the language code (optional)")
    domain: str | None = Field("domain", description="key holding the domain (optional)")
    unit_id: str | None = Field("unit_id", description="key holding the semantic unit id (optional)")


class IdSet:
    """Ids seen so far as 8-byte hashes (sorted numpy runs plus a small recent set), not a set of id strings."""

    def __init__(self, recent_max: int = 1 << 16) -> None:
        self._runs: list[np.ndarray] = []
        self._recent: set[int] = set()
        self._recent_max = recent_max

    def check(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of ids and a bool mask of those already seen (earlier, or earlier in this list); adds nothing."""
        hl = list(map(hash, ids))  # map over a builtin: no Python frame per id
        h = np.array(hl, dtype=np.int64) if hl else np.zeros(0, dtype=np.int64)
        if self._recent and not self._recent.isdisjoint(hl):  # set test in C; the mask only when one is there
            dup = np.fromiter((x in self._recent for x in hl), dtype=bool, count=len(hl))
        else:
            dup = np.zeros(len(h), dtype=bool)
        for run in self._runs:
            pos = np.minimum(np.searchsorted(run, h), len(run) - 1)
            dup |= run[pos] == h
        if len(h) > 1:
            _, first = np.unique(h, return_index=True)
            within = np.ones(len(h), dtype=bool)
            within[first] = False
            dup |= within
        return h, dup

    def commit(self, hashes: np.ndarray) -> None:
        """Remember hashes returned by :meth:`check` (only after their rows were accepted)."""
        self._recent.update(hashes.tolist())
        if len(self._recent) > self._recent_max:
            self._runs.append(np.sort(np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))))
            self._recent = set()
            while len(self._runs) > 1 and len(self._runs[-1]) * 2 >= len(self._runs[-2]):
                b, a = self._runs.pop(), self._runs.pop()
                self._runs.append(np.sort(np.concatenate([a, b])))

    def add(self, ids: list[str]) -> np.ndarray:
        """Check and remember ids; returns the mask of duplicates (those are not remembered twice)."""
        h, dup = self.check(ids)
        self.commit(h[~dup])
        return dup


@dataclass
class ReadOptions:
    """How a reader maps and checks records (one per source; the build fills it from the source config)."""

    source: str
    fields: FieldMap = field(default_factory=FieldMap)
    lang: str | None = None
    domain: str | None = None
    max_doc_bytes: int = 8 << 20
    block_bytes: int = 1 << 20
    batch_rows: int = 8192
    id_prefix: str = ""
    seen_ids: IdSet | None = None
    adaptive: dict = field(default_factory=dict)  # parse strategy carried from block to block (and file to file)

    def default_id(self, file_label: str, where: int) -> str:
        return f"{self.id_prefix or self.source}:{file_label}:{where}"


def quarantine(file: str, reason: str, line: int | None = None, offset: int | None = None, detail: str = "",
               raw: bytes | str = b"") -> Quarantined:  # fmt: skip
    """A quarantine record with a short printable snippet of the bad input."""
    snippet = raw[:_SNIPPET].decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw[:_SNIPPET]
    return Quarantined(file=file, line=line, offset=offset, reason=reason, detail=detail[:300], snippet=snippet)


# ---------------------------------------------------------------- record checks shared by every reader


def _as_str(value: Any) -> str | None | bool:
    """A field value as str (scalars coerced); False when it cannot be one."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return False


_JSON_TYPES = {"NoneType": "null", "str": "string", "int": "number", "float": "number", "bool": "boolean",
               "list": "array", "dict": "object"}  # fmt: skip
# keys that usually hold a document's text in public data sets, tried first when the mapped text key is absent
_TEXT_KEYS = ("content", "body", "document", "raw_content", "article", "passage", "sentence", "contents", "txt")


def text_key_hint(text_key: str, keys: list[str], string_keys: list[str], kind: str = "key") -> str:
    """What a record/table without the mapped text field has, and the ``fields`` mapping that would read it."""
    shown = ", ".join(repr(k) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
    hint = f"no {text_key!r} {kind}; {kind}s: {shown or 'none'}"
    guess = next((k for k in _TEXT_KEYS if k in string_keys), string_keys[0] if len(string_keys) == 1 else None)
    if guess:
        hint += f"; if {guess!r} holds the text, map it in the source config: `fields: {{text: {guess}}}`"
    return hint


def check_record(obj: Any, opts: ReadOptions, file: str, label: str, line: int | None, offset: int | None,
                 raw: bytes | str = b"") -> dict | Quarantined:  # fmt: skip
    """Validate one parsed record; a corpus row dict, or the reason it cannot be one."""
    if not isinstance(obj, dict):
        kind = _JSON_TYPES.get(type(obj).__name__, type(obj).__name__)
        return quarantine(file, "not_an_object", line, offset, f"a JSON {kind}, not an object with a text key", raw)
    fm = opts.fields
    if fm.text not in obj:
        keys = [str(k) for k in obj]
        hint = text_key_hint(fm.text, keys, [k for k in keys if isinstance(obj[k], str)])
        return quarantine(file, "missing_text", line, offset, hint, raw)
    if obj[fm.text] is None:
        return quarantine(file, "missing_text", line, offset, f"{fm.text!r} is null", raw)
    text = obj[fm.text]
    if not isinstance(text, str):
        return quarantine(file, "text_not_string", line, offset, f"{fm.text!r} is {type(text).__name__}", raw)
    if "\x00" in text:
        return quarantine(file, "nul_bytes", line, offset, "text contains NUL characters", raw)
    if not text.strip():
        return quarantine(file, "empty_text", line, offset, "text is empty or whitespace only", raw)
    if len(text) > opts.max_doc_bytes or len(text.encode("utf-8", "surrogatepass")) > opts.max_doc_bytes:
        return quarantine(file, "too_large", line, offset, f"text over max_doc_bytes={opts.max_doc_bytes}", raw)
    row: dict[str, Any] = {"text": text, "source": opts.source}
    for key in _META:
        src = getattr(fm, key)
        value = _as_str(obj.get(src)) if src else None
        if value is False:
            return quarantine(file, "bad_field", line, offset, f"{src!r} must be a string", raw)
        row[key] = value
    row["lang"] = row["lang"] or opts.lang
    row["domain"] = row["domain"] or opts.domain
    if row["id"] is None:
        row["id"] = opts.default_id(label, line if line is not None else offset or 0)
    elif opts.seen_ids is not None and opts.seen_ids.add([row["id"]])[0]:
        return quarantine(file, "duplicate_id", line, offset, f"id {row['id']!r} seen before", raw)
    return row


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Corpus rows (dicts) to a CORPUS_SCHEMA table."""
    return pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in CORPUS_COLUMNS}, schema=CORPUS_SCHEMA)


def _string_col(table: pa.Table, key: str | None, n: int) -> pa.ChunkedArray | None:
    if not key or key not in table.column_names:
        return None
    col = table.column(key)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_integer(col.type) or pa.types.is_null(col.type):
        return col.cast(pa.string())
    raise TypeError(f"{key!r} is {col.type}")


def vectorised_table(table: pa.Table, opts: ReadOptions, label: str, first: int, step: int = 1,
                     raw_checked: bool = False) -> pa.Table | None:  # fmt: skip
    """Map and check a whole parsed table at once; None when any row needs the exact per-record path.

    ``first``/``step`` give each row's line (JSONL) or row number (Parquet) for generated ids; ``raw_checked`` says
    the caller already checked the raw bytes for invalid UTF-8 and NUL (cheaper on one buffer than per column).
    """
    n, fm = table.num_rows, opts.fields
    if fm.text not in table.column_names:
        return None
    text = table.column(fm.text)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)) or text.null_count:
        return None
    text = text.cast(pa.large_string())
    if n and pc.max(pc.binary_length(text)).as_py() > opts.max_doc_bytes:
        return None
    if pc.any(pc.match_substring_regex(text, r"\A\s*\z")).as_py():
        return None
    if not raw_checked and (pc.any(pc.match_substring(text, "\x00")).as_py() or not _valid_utf8(table)):
        return None
    try:
        cols = {key: _string_col(table, getattr(fm, key), n) for key in _META}
    except (TypeError, pa.ArrowInvalid):
        return None
    out, explicit = _corpus_rows(text, cols, opts, label, first + np.arange(n, dtype=np.int64) * step)
    if opts.seen_ids is not None and explicit.any():
        hashes, dup = opts.seen_ids.check(out.column("id").filter(pa.array(explicit)).to_pylist())
        if dup.any():
            return None
        opts.seen_ids.commit(hashes)
    return out


def _corpus_rows(text: Any, cols: dict[str, Any], opts: ReadOptions, label: str,
                 lines: np.ndarray) -> tuple[pa.Table, np.ndarray]:  # fmt: skip
    """Mapped, checked columns as rows in CORPUS_SCHEMA: a generated id (from the row's line or row number in
    ``lines``) where none was given, the source/lang/domain defaults; also the mask of rows whose id was given (only
    those are checked for duplicates)."""
    n, ids = len(lines), cols["id"]
    explicit = np.zeros(n, dtype=bool) if ids is None else pc.is_valid(ids).to_numpy(zero_copy_only=False)
    if not explicit.all():
        given = ids.to_pylist() if ids is not None else [None] * n
        ids = pa.array([v if v is not None else opts.default_id(label, ln)
                        for v, ln in zip(given, lines.tolist(), strict=True)], pa.string())  # fmt: skip
    out = {"id": ids, "text": text, "source": pa.array([opts.source] * n, pa.string())}
    for key, default in (("lang", opts.lang), ("domain", opts.domain), ("unit_id", None)):
        col = cols[key]
        if col is None:
            col = pa.nulls(n, pa.string()) if default is None else pa.array([default] * n, pa.string())
        elif default is not None:
            col = pc.fill_null(col, default)
        out[key] = col
    return pa.Table.from_pydict(out, schema=CORPUS_SCHEMA), explicit


def _valid_utf8(table: pa.Table) -> bool:
    try:
        for col in table.columns:
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                col.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


# ---------------------------------------------------------------- JSONL


class NotRegularFile(OSError):
    """A FIFO, socket, device or directory where a data file was expected."""


def check_regular(path: str | Path) -> None:
    """Raise :class:`NotRegularFile` unless ``path`` is a regular file (opening a FIFO with no writer blocks)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "directory" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "special file"
        raise NotRegularFile(f"{path}: is a {kind}, not a regular file")


def open_maybe_compressed(path: str | Path) -> IO[bytes]:
    """Open a regular file for binary reading, decompressing .gz and .zst on the fly."""
    p = str(path)
    check_regular(p)
    if p.endswith(".gz"):
        return gzip.open(p, "rb")
    if p.endswith(".zst") or p.endswith(".zstd"):
        raw = open(p, "rb")  # noqa: SIM115 - closed by the reader wrapper
        return io.BufferedReader(
            zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        )
    return open(p, "rb")  # noqa: SIM115


_BOM = b"\xef\xbb\xbf"
# magic bytes -> (format, the suffix that makes the readers decompress it, or None when they cannot)
_MAGIC = (
    (b"\x1f\x8b", "gzip", ".gz"), (b"\x28\xb5\x2f\xfd", "zstd", ".zst"), (b"BZh", "bzip2", None),
    (b"\xfd7zXZ\x00", "xz", None), (b"PK\x03\x04", "zip", None), (b"PAR1", "Parquet", None),
)  # fmt: skip


def binary_detail(head: bytes, file: str) -> str:
    """Why a text reader refuses a binary file, naming a compressed or Parquet format it recognises."""
    for magic, fmt, suffix in _MAGIC:
        if head.startswith(magic) and not file.endswith(suffix or "\0"):
            if suffix:
                return f"{fmt}-compressed data without a {suffix} suffix: rename it to {Path(file).name}{suffix}"
            if fmt == "Parquet":
                return "a Parquet file: list it under a source of type parquet"
            return f"{fmt}-compressed data: decompress it first (readers decompress .gz and .zst)"
    return "binary content in a text file"


def looks_binary(sample: bytes) -> bool:
    """True for bytes that are not text: many control bytes or mostly undecodable as UTF-8."""
    if not sample:
        return False
    ctrl = sum(sample.count(bytes([b])) for b in (*range(0, 9), 11, 12, *range(14, 27), *range(28, 32)))
    if ctrl > max(2, 0.05 * len(sample)):
        return True
    bad = sample[:4096].decode("utf-8", "replace").count("\ufffd")
    return bad / max(1, len(sample[:4096])) > 0.1


_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def _zstd_error() -> tuple[type[BaseException], ...]:
    return (zstandard.ZstdError,)


def iter_jsonl(path: str | Path, opts: ReadOptions, label: str | None = None) -> Iterator[Batch]:
    """Stream a JSONL file (plain, .gz, .zst) as validated tables and quarantine records."""
    file, label = str(path), label or Path(path).name
    errors = _READ_ERRORS + _zstd_error()
    try:
        f = open_maybe_compressed(path)
    except OSError as e:
        yield quarantine(file, "unreadable_file", detail=str(e))
        return
    with f:
        try:
            head = f.peek(8192)[:8192] if hasattr(f, "peek") else b""
        except errors as e:
            yield quarantine(file, "truncated_file", offset=0, detail=f"{type(e).__name__}: {e}")
            return
        if not head.strip() and len(head) < 8192:
            yield quarantine(file, "empty_file", detail="file has no records" if head else "file has no bytes")
            return
        if looks_binary(head):
            yield quarantine(file, "binary_file", offset=0, detail=binary_detail(head, file))
            return
        start = 0
        if head.startswith(_BOM):  # a UTF-8 byte order mark is not part of the first record
            f.read(len(_BOM))
            start = len(_BOM)
        blocks, state = _iter_blocks(f, opts, file, start), opts.adaptive
        while True:
            try:
                item = next(blocks)
            except StopIteration:
                break
            except errors as e:
                yield quarantine(file, "truncated_file", detail=f"{type(e).__name__}: {e}")
                break
            if isinstance(item, Quarantined):
                yield item
            else:
                yield from _parse_block(item[2], item[0], item[1], opts, file, label, state, item[3])


class _Truncated(Exception):
    def __init__(self, data: bytes, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.data = data


def _read(f: IO[bytes], n: int, errors: tuple[type[BaseException], ...]) -> bytes:
    """Up to n bytes in 1 MiB reads, so a decompression error keeps what was read before it."""
    if type(f) is io.BufferedReader and isinstance(f.raw, io.FileIO):  # plain file: one read, no join
        return f.read(n)
    parts, size = [], 0
    read = getattr(f, "read1", f.read)
    try:
        while size < n and (piece := read(min(1 << 20, n - size))):
            parts.append(piece)
            size += len(piece)
    except errors as e:
        raise _Truncated(b"".join(parts), e) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _iter_blocks(f: IO[bytes], opts: ReadOptions, file: str,
                 start: int = 0) -> Iterator[tuple[int, int, bytes, np.ndarray] | Quarantined]:  # fmt: skip
    """Newline-aligned blocks as (byte offset, first line number, bytes, positions of its newlines); over-long lines
    skipped as too_large."""
    carry, offset, line = b"", start, 1
    errors = _READ_ERRORS + _zstd_error()
    while True:
        try:
            chunk, error = _read(f, opts.block_bytes, errors), None
        except _Truncated as t:
            chunk, error = t.data, t
        if not chunk and error is None:
            if carry:
                yield offset, line, carry, _newlines(carry)
            return
        cut = chunk.rfind(b"\n") + 1
        if cut and b"\n" not in carry:  # the usual case: one copy at most (none for a block without a tail)
            block = b"".join((carry, memoryview(chunk)[:cut])) if carry or cut < len(chunk) else chunk
            carry = chunk[cut:]
        else:  # no newline in this chunk, or a remainder after a skipped line that has newlines of its own
            buf = carry + chunk if carry else chunk
            cut = buf.rfind(b"\n") + 1
            block, carry = buf[:cut], buf[cut:]
        if block:
            nl = _newlines(block)  # found once: the parser and the line numbers share them
            yield offset, line, block, nl
            offset, line = offset + len(block), line + len(nl)
        if error is not None:
            yield quarantine(file, "truncated_file", line, offset, f"stream ends early: {error}", carry)
            return
        if len(carry) > opts.max_doc_bytes:
            size, carry = yield from _skip_line(f, carry, opts, file, offset, line)
            offset, line = offset + size, line + 1


def _newlines(block: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)


def _skip_line(f: IO[bytes], carry: bytes, opts: ReadOptions, file: str, offset: int, line: int):
    """Discard the rest of an over-long line while streaming; returns (its size incl. newline, remainder)."""
    yield quarantine(file, "too_large", line, offset, f"line over max_doc_bytes={opts.max_doc_bytes}", carry)
    size = len(carry)
    while True:
        chunk = f.read(opts.block_bytes)
        if not chunk:
            return size, b""
        nl = chunk.find(b"\n")
        if nl >= 0:
            return size + nl + 1, chunk[nl + 1 :]
        size += len(chunk)


def _parse_block(block: bytes, offset: int, line: int, opts: ReadOptions, file: str, label: str,
                 state: dict, newlines: np.ndarray | None = None) -> Iterator[Batch]:  # fmt: skip
    """One vectorised parse of the block's lines that pass cheap raw checks, exact handling for the others
    (:func:`_single_parse`); when that parse still fails, the block is split into ~8 pieces, recursively, and exact
    lines only for the small pieces that fail (:func:`_parse_split`).

    After a block that needed the split the next one goes straight to pieces (files with unlocatable bad lines
    everywhere are not parsed twice); a block whose pieces all pass makes the reader try whole blocks again.
    """
    if not state.get("pieces"):
        out = _single_parse(block, offset, line, opts, file, label, newlines)
        if out is not None:
            yield from out
            return
    failed = yield from _parse_split(block, offset, line, opts, file, label)
    state["pieces"] = failed > 0


class _DeferredIds:
    """Stands in for the id set while exact lines are checked: records explicit ids, calls none a duplicate, so
    duplicates are decided afterwards for every row of the block in line order."""

    def __init__(self) -> None:
        self.calls = 0

    def add(self, ids: list[str]) -> np.ndarray:
        self.calls += 1
        return np.zeros(len(ids), dtype=bool)


def _line_bounds(arr: np.ndarray, newlines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (the newline's position, or the block's length) of every line of a block."""
    ends = np.flatnonzero(arr == 10) if newlines is None else newlines
    if len(arr) and arr[-1] != 10:
        ends = np.append(ends, len(arr))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    return starts, ends


def _suspect_lines(block: bytes, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   opts: ReadOptions) -> np.ndarray:  # fmt: skip
    """Lines the vectorised parse must not see: blank, not ``{...}`` (non-objects, truncated, BOM, indented), a raw
    NUL byte, or a mapped key holding a non-string (polars would stringify it). An escaped NUL (``\\u0000``) parses
    the same in polars and ``json``; only in the text is it bad, which the row checks see."""
    last = np.maximum(ends - 1, 0)
    last = np.where((arr[last] == 13) & (ends - 1 > starts), last - 1, last)  # CRLF
    n = len(arr)
    suspect = (ends <= starts) | (arr[np.minimum(starts, n - 1)] != 0x7B) | (arr[last] != 0x7D) | (last <= starts)
    hits = [m.start() for m in _suspect_types(opts).finditer(block)]
    at = block.find(b"\x00")  # memchr: far faster than one more branch in the regex
    while at >= 0:
        hits.append(at)
        at = block.find(b"\x00", at + 1)
    if hits:
        suspect[np.searchsorted(ends, np.array(hits), side="left")] = True
    return suspect


def _join_lines(block: bytes, starts: np.ndarray, ends: np.ndarray, idx: np.ndarray) -> bytes:
    """The bytes of lines ``idx`` (sorted), each with its newline; runs of consecutive lines are copied at once."""
    if not len(idx):
        return b""
    view = memoryview(block)
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    first, last = idx[np.r_[0, brk]], idx[np.r_[brk - 1, len(idx) - 1]]
    parts = [view[s : e + 1] for s, e in zip(starts[first].tolist(), ends[last].tolist(), strict=True)]
    out = b"".join(parts)
    return out if out.endswith(b"\n") else out + b"\n"


def _invalid_utf8_lines(block: bytes, ends: np.ndarray) -> list[int]:
    """Indices of lines with invalid UTF-8 (one decode pass, resumed after each bad line)."""
    bad, pos, view = [], 0, memoryview(block)
    while pos < len(block):
        try:
            str(view[pos:], "utf-8")
            break
        except UnicodeDecodeError as e:
            i = int(np.searchsorted(ends, pos + e.start, side="left"))
            bad.append(i)
            pos = int(ends[i]) + 1
    return bad


def _single_parse(block: bytes, offset: int, line: int, opts: ReadOptions, file: str, label: str,
                  newlines: np.ndarray | None = None) -> list[Batch] | None:  # fmt: skip
    """A block's batches from one polars parse of its plain lines; None when that parse fails for a reason no raw
    check locates (a syntax error inside ``{...}``), so the caller falls back to the split.

    Lines that fail a raw check, and parsed rows that fail a record check (null/blank/too long text), take the exact
    path (:func:`_parse_line`), which gives their reasons and line numbers; duplicate ids are decided last, for all
    rows in line order (the first occurrence is kept), so the outputs equal parsing every line on its own.
    """
    arr = np.frombuffer(block, dtype=np.uint8)
    starts, ends = _line_bounds(arr, newlines)
    suspect = _suspect_lines(block, arr, starts, ends, opts)
    schema = {k: pl.String for k in _mapped_keys(opts)}
    table = None
    for attempt in range(2):
        good = np.flatnonzero(~suspect)
        if not len(good):
            table = None
            break
        data = block if len(good) == len(ends) else _join_lines(block, starts, ends, good)
        try:
            df = pl.read_ndjson(io.BytesIO(data), schema=schema)
            nul = df.get_column(opts.fields.text).str.contains("\x00", literal=True).fill_null(False).to_numpy()
            table = df.to_arrow()
            break
        except (pl.exceptions.PolarsError, ValueError) as e:
            if attempt or "utf8" not in str(e).lower():
                return None
            bad = _invalid_utf8_lines(block, ends)
            if not bad:
                return None
            suspect[bad] = True
    if table is not None and table.num_rows != len(good):
        return None
    exact = np.flatnonzero(suspect)
    fast = None
    if table is not None:
        text = table.column(opts.fields.text)
        blank = pc.match_substring_regex(text, r"\A\s*\z")
        redo = pc.or_(blank, pc.greater(pc.binary_length(text), opts.max_doc_bytes))
        redo_mask = pc.fill_null(redo, True).to_numpy(zero_copy_only=False)  # null text: the exact path says why
        redo_mask |= nul  # escaped NUL in the text (polars' memmem: ~15x faster than pyarrow's match_substring)
        if redo_mask.any():
            exact = np.sort(np.concatenate([exact, good[redo_mask]]))
            table, good = table.filter(pa.array(~redo_mask)), good[~redo_mask]
        fast = _map_rows(table, opts, label, good + line)
    return _assemble(block, offset, line, opts, file, label, starts, ends, good, fast, exact)


def _map_rows(table: pa.Table, opts: ReadOptions, label: str, lines: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Parsed (all-string) rows in CORPUS_SCHEMA (:func:`_corpus_rows`) and the mask of rows whose id was given."""
    fm = opts.fields
    cols = {key: table.column(getattr(fm, key)).cast(pa.string()) if getattr(fm, key) else None for key in _META}
    return _corpus_rows(table.column(fm.text).cast(pa.large_string()), cols, opts, label, lines)


def _assemble(block: bytes, offset: int, line: int, opts: ReadOptions, file: str, label: str, starts: np.ndarray,
              ends: np.ndarray, good: np.ndarray, fast: tuple[pa.Table, np.ndarray] | None,
              exact: np.ndarray) -> list[Batch]:  # fmt: skip
    """Check the exact-path lines, then decide duplicate ids over every row in line order; returns the quarantine
    records in line order, then one table of the kept rows in line order."""
    deferred = _DeferredIds()
    xopts = dataclasses.replace(opts, seen_ids=deferred)
    bad: list[tuple[int, Quarantined]] = []
    xrows: list[tuple[int, dict, bool]] = []  # (line index, row, id given?)
    for i in exact.tolist():
        raw = block[starts[i] : ends[i]]
        if not raw.strip():  # blank lines are not records
            continue
        calls = deferred.calls
        rec = _parse_line(raw, xopts, file, label, line + i, offset + int(starts[i]))
        if isinstance(rec, Quarantined):
            bad.append((i, rec))
        else:
            xrows.append((i, rec, deferred.calls > calls))
    rows, explicit = fast if fast is not None else (None, np.zeros(0, dtype=bool))
    keep = np.ones(len(explicit), dtype=bool)
    xkeep = [True] * len(xrows)
    if opts.seen_ids is not None:
        # (line index, fast row k >= 0 or exact row -1 - k, id) of every row with a given id, in line order
        cand: list[tuple[int, int, str]] = []
        if explicit.any():
            ids = rows.column("id").to_pylist()
            cand = [(i, k, ids[k]) for k, i in enumerate(good.tolist()) if explicit[k]]
        if xrows:
            cand += [(i, -1 - k, r["id"]) for k, (i, r, given) in enumerate(xrows) if given]
            cand.sort(key=lambda c: c[0])
        if cand:
            hashes, dup = opts.seen_ids.check([c[2] for c in cand])
            for (i, k, id_), d in zip(cand, dup.tolist(), strict=True):
                if d:
                    raw = block[starts[i] : ends[i]]
                    detail = f"id {id_!r} seen before"
                    bad.append((i, quarantine(file, "duplicate_id", line + i, offset + int(starts[i]), detail, raw)))
                    if k >= 0:
                        keep[k] = False
                    else:
                        xkeep[-1 - k] = False
            opts.seen_ids.commit(hashes[~dup])
    out: list[Batch] = [q for _, q in sorted(bad, key=lambda b: b[0])]
    if rows is not None and not keep.all():
        rows, good = rows.filter(pa.array(keep)), good[keep]
    kept_x = [(i, r) for (i, r, _), k in zip(xrows, xkeep, strict=True) if k]
    if kept_x:
        xt = rows_to_table([r for _, r in kept_x])
        if rows is None or not rows.num_rows:
            rows = xt
        else:
            lines = np.concatenate([good, np.array([i for i, _ in kept_x], dtype=good.dtype)])
            rows = pa.concat_tables([rows, xt]).take(pa.array(np.argsort(lines, kind="stable")))
    if rows is not None and rows.num_rows:
        out.append(rows)
    return out


def _parse_split(block: bytes, offset: int, line: int, opts: ReadOptions, file: str, label: str):
    failed = 0
    for piece, off, ln, nl in _pieces(block, offset, line, max(4096, len(block) // _SPLIT)):
        table = _try_vectorised(piece, ln, opts, label, nl)
        if table is None:
            failed += 1
            if _MIN_BISECT_BYTES < len(piece) < len(block):  # one long line cannot be split further
                yield from _parse_split(piece, off, ln, opts, file, label)
            else:
                yield from _parse_lines(piece, off, ln, opts, file, label)
        elif table.num_rows:
            yield table
    return failed


def _pieces(block: bytes, offset: int, line: int, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """Line-aligned pieces of ~size bytes as (bytes, byte offset, first line number, newlines in it)."""
    start = 0
    while start < len(block):
        end = block.find(b"\n", start + size) + 1 or len(block)
        piece = block[start:end]
        nl = piece.count(b"\n")
        yield piece, offset + start, line, nl
        line += nl
        start = end


def _try_vectorised(block: bytes, line: int, opts: ReadOptions, label: str,
                    newlines: int | None = None) -> pa.Table | None:  # fmt: skip
    """Parse a whole block with polars (fast, checks UTF-8 and JSON syntax); None when any line needs the exact path.

    polars stringifies non-string values for a String schema, so raw-byte checks send a block to the exact path when a
    mapped key holds a non-string (``"text": 5``) or an object/array, or when it contains a NUL; blank lines make the
    row count differ from the line count.
    """
    nlines = (block.count(b"\n") if newlines is None else newlines) + (0 if block.endswith(b"\n") else 1)
    if b"\x00" in block or b"\\u0000" in block or _suspect_types(opts).search(block):
        return None
    schema = {k: pl.String for k in _mapped_keys(opts)}
    try:
        parsed = pl.read_ndjson(io.BytesIO(block), schema=schema).to_arrow()
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if parsed.num_rows != nlines:
        return None
    return vectorised_table(parsed, opts, label, line, raw_checked=True)


@functools.lru_cache(maxsize=64)
def _suspect_patterns(text_key: str, other_keys: tuple[str, ...]) -> re.Pattern:
    text = rb'"%s"\s*:\s*[^"\s]' % re.escape(json.dumps(text_key)[1:-1].encode())
    others = [rb'"%s"\s*:\s*[\[{]' % re.escape(json.dumps(k)[1:-1].encode()) for k in other_keys]
    return re.compile(b"|".join([text, *others]))


def _mapped_keys(opts: ReadOptions) -> list[str]:
    return [k for k in (opts.fields.text, *(getattr(opts.fields, m) for m in _META)) if k]


def _suspect_types(opts: ReadOptions) -> re.Pattern:
    keys = _mapped_keys(opts)
    return _suspect_patterns(keys[0], tuple(keys[1:]))


def _parse_lines(block: bytes, offset: int, line: int, opts: ReadOptions, file: str, label: str) -> Iterator[Batch]:
    """Exact path: one record per non-blank line with its line number and byte offset."""
    rows: list[dict] = []
    pos = 0
    for i, raw in enumerate(block.split(b"\n")):
        here, ln = offset + pos, line + i
        pos += len(raw) + 1
        if not raw.strip():
            continue
        rec = _parse_line(raw, opts, file, label, ln, here)
        if isinstance(rec, Quarantined):
            yield rec
        else:
            rows.append(rec)
    if rows:
        yield rows_to_table(rows)


def _parse_line(raw: bytes, opts: ReadOptions, file: str, label: str, line: int, offset: int) -> dict | Quarantined:
    if len(raw) > opts.max_doc_bytes:
        return quarantine(file, "too_large", line, offset, f"line over max_doc_bytes={opts.max_doc_bytes}", raw)
    if b"\x00" in raw:
        return quarantine(file, "nul_bytes", line, offset, "raw NUL byte in line", raw)
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return quarantine(file, "invalid_utf8", line, offset, str(e), raw)
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return quarantine(file, "invalid_json", line, offset, str(e), raw)
    except RecursionError:
        return quarantine(file, "invalid_json", line, offset, "JSON nested too deeply to parse", raw)
    return check_record(obj, opts, file, label, line, offset, raw)


# ---------------------------------------------------------------- Parquet and datasets tables


def iter_parquet(path: str | Path, opts: ReadOptions, label: str | None = None) -> Iterator[Batch]:
    """Stream a Parquet file in row batches; rows are numbered from 1 (like JSONL lines) for ids and quarantine
    records (their ``line`` field)."""
    file, label = str(path), label or Path(path).name
    try:
        check_regular(file)
        size = os.path.getsize(file)
    except OSError as e:  # vanished since it was listed, or a FIFO/directory
        yield quarantine(file, "unreadable_file", detail=str(e))
        return
    if size == 0:
        yield quarantine(file, "empty_file", detail="file has no bytes")
        return
    try:
        pf = pq.ParquetFile(file)
    except (pa.ArrowInvalid, OSError) as e:
        yield quarantine(file, "invalid_parquet", offset=0, detail=str(e))
        return
    schema = pf.schema_arrow
    if opts.fields.text not in schema.names:  # every row lacks its text: one explanation, each row quarantined
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        hint = text_key_hint(opts.fields.text, schema.names, strings, kind="column")
        for row in range(1, pf.metadata.num_rows + 1):
            yield quarantine(file, "missing_text", row, None, hint)
        return
    wanted = [c for c in (opts.fields.text, *(getattr(opts.fields, k) for k in _META)) if c]
    cols = [c for c in wanted if c in schema.names]
    yield from iter_tables(_safe_batches(pf, cols, opts, file), opts, file, label)


def _safe_batches(pf: Any, cols: list[str], opts: ReadOptions, file: str) -> Iterator[pa.Table | Quarantined]:
    try:
        for b in pf.iter_batches(batch_size=opts.batch_rows, columns=cols):
            yield pa.Table.from_batches([b])
    except (pa.ArrowInvalid, OSError) as e:
        yield quarantine(file, "invalid_parquet", detail=f"stopped reading: {e}")


def iter_tables(tables: Iterable[pa.Table | Quarantined], opts: ReadOptions, file: str, label: str) -> Iterator[Batch]:
    """Validate a stream of arbitrary tables (Parquet batches, dataset batches) row-numbered from 1."""
    row = 1
    for t in tables:
        if isinstance(t, Quarantined):
            yield t
            continue
        ok = vectorised_table(t, opts, label, row)
        if ok is not None:
            yield ok
        else:
            good = []
            for i, rec in enumerate(t.to_pylist()):
                r = check_record(rec, opts, file, label, row + i, None, json.dumps(rec, default=str)[:_SNIPPET])
                if isinstance(r, Quarantined):
                    yield r
                else:
                    good.append(r)
            if good:
                yield rows_to_table(good)
        row += t.num_rows


def iter_hf_disk(path: str | Path, opts: ReadOptions, split: str | None = None) -> Iterator[Batch]:
    """Stream a dataset saved with ``datasets.save_to_disk`` (a Dataset, or one split of a DatasetDict)."""
    import datasets  # heavy: deferred until used

    file = str(path)
    try:
        ds = datasets.load_from_disk(file)
    except (FileNotFoundError, ValueError, OSError) as e:
        yield quarantine(file, "invalid_dataset", detail=str(e))
        return
    if isinstance(ds, datasets.DatasetDict):
        splits = [split] if split else sorted(ds)
        for s in splits:
            yield from iter_tables(_dataset_batches(ds[s], opts), opts, f"{file}[{s}]", s)
    else:
        yield from iter_tables(_dataset_batches(ds, opts), opts, file, Path(file).name)


def _dataset_batches(ds: Any, opts: ReadOptions) -> Iterator[pa.Table]:
    for batch in ds.data.to_batches(max_chunksize=opts.batch_rows):
        yield pa.Table.from_batches([batch])


def iter_hf_files(files: list[str], builder: str, opts: ReadOptions) -> Iterator[Batch]:
    """Stream local data files through a packaged ``datasets`` builder (json, parquet, csv, text), offline."""
    import datasets  # heavy: deferred until used

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    file = ",".join(files)
    try:
        ds = datasets.load_dataset(builder, data_files=files, split="train", streaming=True)
        yield from iter_tables(_iterable_batches(ds, opts), opts, file, Path(files[0]).name)
    except (ValueError, OSError, pa.ArrowInvalid, datasets.exceptions.DatasetGenerationError) as e:
        yield quarantine(file, "invalid_dataset", detail=f"{type(e).__name__}: {e}")


def _iterable_batches(ds: Any, opts: ReadOptions) -> Iterator[pa.Table]:
    for batch in ds.iter(batch_size=opts.batch_rows):
        yield pa.Table.from_pydict(batch)


# ---------------------------------------------------------------- whole files (text, markdown, rst, .gz)


def read_text_file(path: str | Path, opts: ReadOptions, label: str, doc_id: str | None = None) -> Batch:
    """One file as one document: checks size (without reading a huge file whole), binary content and UTF-8."""
    file = str(path)
    try:
        with open_maybe_compressed(file) as f:
            data = f.read(opts.max_doc_bytes + 1)
    except _READ_ERRORS + _zstd_error() as e:
        unreadable = (FileNotFoundError, PermissionError, IsADirectoryError, NotRegularFile)
        reason = "unreadable_file" if isinstance(e, unreadable) else "truncated_file"
        return quarantine(file, reason, detail=f"{type(e).__name__}: {e}")
    if not data:
        return quarantine(file, "empty_file", detail="file has no bytes")
    if len(data) > opts.max_doc_bytes:
        return quarantine(file, "too_large", offset=0, detail=f"file over max_doc_bytes={opts.max_doc_bytes}")
    if looks_binary(data[:8192]):
        return quarantine(file, "binary_file", offset=0, detail=binary_detail(data[:16], file))
    if b"\x00" in data:
        return quarantine(file, "nul_bytes", offset=data.find(b"\x00"), detail="NUL byte in text file")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte order mark is not text
    except UnicodeDecodeError as e:
        return quarantine(file, "invalid_utf8", offset=e.start, detail=str(e), raw=data[max(0, e.start - 20) :])
    if not text.strip():
        return quarantine(file, "empty_text", offset=0, detail="file is whitespace only")
    row = {"id": doc_id or f"{opts.id_prefix or opts.source}:{label}", "text": text, "source": opts.source,
           "lang": opts.lang, "domain": opts.domain, "unit_id": None}  # fmt: skip
    return rows_to_table([row])


def iter_text_files(files: Iterable[tuple[str, str]], opts: ReadOptions) -> Iterator[Batch]:
    """(path, label) pairs as one document each, batched into tables of up to ``batch_rows``."""
    pending: list[pa.Table] = []
    for path, label in files:
        item = read_text_file(path, opts, label)
        if isinstance(item, Quarantined):
            yield item
        else:
            pending.append(item)
            if len(pending) >= opts.batch_rows:
                yield pa.concat_tables(pending)
                pending = []
    if pending:
        yield pa.concat_tables(pending)


def list_files(root: str | Path, patterns: list[str]) -> list[tuple[str, str]]:
    """Sorted (path, path relative to root) of regular files under root matching any glob pattern."""
    base = Path(root)
    if base.is_file():
        return [(str(base), base.name)]
    found = {str(p): p.relative_to(base).as_posix() for pat in patterns for p in base.rglob(pat) if p.is_file()}
    return sorted(found.items())


# ---------------------------------------------------------------- documents view


def iter_documents(batches: Iterable[Batch]) -> Iterator[Document | Quarantined]:
    """Flatten batches into Document objects (and pass Quarantined records through)."""
    for b in batches:
        if isinstance(b, Quarantined):
            yield b
        else:
            for row in b.to_pylist():
                yield Document(**row)


def read_jsonl(path: str | Path, source: str = "jsonl", **kw: Any) -> Iterator[Document | Quarantined]:
    """Documents and quarantine records of a JSONL file (see :class:`ReadOptions` for keywords)."""
    return iter_documents(iter_jsonl(path, ReadOptions(source=source, **kw)))


def read_parquet(path: str | Path, source: str = "parquet", **kw: Any) -> Iterator[Document | Quarantined]:
    """Documents and quarantine records of a Parquet file."""
    return iter_documents(iter_parquet(path, ReadOptions(source=source, **kw)))


def read_text_dir(root: str | Path, source: str = "text", patterns: list[str] | None = None,
                  **kw: Any) -> Iterator[Document | Quarantined]:  # fmt: skip
    """Documents and quarantine records of a directory of text/markdown/rst files (one document per file)."""
    files = list_files(root, patterns or ["*.txt", "*.md", "*.rst"])
    return iter_documents(iter_text_files(files, ReadOptions(source=source, **kw)))


def read_hf_disk(path: str | Path, source: str = "hf", split: str | None = None,
                 **kw: Any) -> Iterator[Document | Quarantined]:  # fmt: skip
    """Documents and quarantine records of a dataset saved with ``save_to_disk``."""
    return iter_documents(iter_hf_disk(path, ReadOptions(source=source, **kw), split))
