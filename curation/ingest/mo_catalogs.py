"""Gettext ``.mo`` catalogs as parallel text: one semantic unit per English msgid, one document per translation.

The GNU ``.mo`` format (parsed here with ``struct``, either byte order): a 28-byte header (magic ``0x950412de``,
revision, N strings, offset of the original-string table, offset of the translation table, hash size, hash offset),
then two tables of N ``(length, offset)`` pairs pointing at NUL-terminated strings. A key ``ctxt\\x04msgid`` carries a
msgctxt; ``singular\\x00plural`` keys carry plural forms, whose msgstr holds the forms separated by NUL. The entry with
an empty msgid is the header (charset, Plural-Forms).

Units: ``unit_id = sha1(catalog domain \\x04 msgctxt \\x04 msgid)[:16]``. The English msgid becomes a document with
``lang="en"``; every translation a document with the catalog's locale code (``de``, ``pt_BR``, ``sr@latin``) as
``lang``, sharing the unit_id; all have domain ``ui``. For plural entries the unit is the singular msgid and its
translation is the first plural form. Format-only strings (``%s``, ``%d: %s``, ``_OK``, numbers, punctuation,
identifiers such as ``default:LTR``) are skipped before they become records, and counted as skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from curation.ingest.readers import Batch, ReadOptions, quarantine, rows_to_table
from curation.languages import flores_key as _flores_key
from tokenwise.documents import Quarantined

MAGIC = 0x950412DE
MAX_MO_BYTES = 64 << 20
ENGLISH = "en"

# printf (%s, %-10.3ld, %1$s, %(name)s), python/brace ({0}, {name}), shell (${x}, $x) and Qt (%1) placeholders
_FORMAT = re.compile(
    r"%(?:\([^)]*\))?[-+ #0'I]*(?:\d+\$)?(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|Z|t)?[diouxXeEfFgGaAcsSpnm%]"
    r"|%\d+|\{[^{}\s]*\}|\$\{[^}]*\}|\$[A-Za-z_]\w*|<[^<>]{1,40}>|&[a-z]+;"
)
_IDENTIFIER = re.compile(r"^[\w.@/-]*[:|_][\w:|.@/-]*$")


class MoError(ValueError):
    """A ``.mo`` file that cannot be parsed; the message says where the structure is broken."""


@dataclass(slots=True)
class MoEntry:
    """One catalog entry (msgctxt may be None; msgstr holds one string, or every plural form)."""

    msgid: str
    msgstr: list[str]
    msgctxt: str | None = None
    msgid_plural: str | None = None


def _decode(raw: bytes, charset: str, what: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError) as e:
        raise UnicodeDecodeError("utf-8", raw, 0, len(raw), f"{what}: {e}") from None


def parse_header(text: str) -> dict[str, str]:
    """The catalog header (``Key: value`` lines of the empty msgid's translation)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def charset_of(header: dict[str, str]) -> str:
    """The charset named in a header's Content-Type (UTF-8 when absent or unusable)."""
    m = re.search(r"charset=([\w.-]+)", header.get("content-type", ""))
    cs = m.group(1) if m else "utf-8"
    return "utf-8" if cs.upper() in ("CHARSET", "") else cs


def parse_mo(data: bytes) -> tuple[dict[str, str], list[MoEntry | UnicodeDecodeError]]:
    """Parse ``.mo`` bytes into (header, entries); an entry whose bytes do not decode is returned as the error."""
    if len(data) < 28:
        raise MoError(f"file too short for a .mo header ({len(data)} bytes)")
    for order in ("<", ">"):
        if struct.unpack(order + "I", data[:4])[0] == MAGIC:
            break
    else:
        raise MoError(f"bad magic number {data[:4].hex()} (expected 950412de in either byte order)")
    revision, n, o_off, t_off = struct.unpack(order + "4I", data[4:20])
    if revision >> 16 not in (0, 1):
        raise MoError(f"unsupported major revision {revision >> 16}")
    if max(o_off, t_off) + 8 * n > len(data):
        raise MoError(
            f"string tables ({n} entries at {o_off}/{t_off}) run past the end of the file ({len(data)} bytes)"
        )
    pairs = [(_string(data, order, o_off + 8 * i), _string(data, order, t_off + 8 * i)) for i in range(n)]
    header: dict[str, str] = {}
    for key, value in pairs:
        if key == b"":
            header = parse_header(value.decode("utf-8", "replace"))
    charset = charset_of(header)
    entries = [_entry(k, v, charset) for k, v in pairs if k != b""]
    return header, entries


def _string(data: bytes, order: str, at: int) -> bytes:
    length, offset = struct.unpack(order + "2I", data[at : at + 8])
    if offset + length > len(data):
        raise MoError(f"string at offset {offset} (length {length}) runs past the end of the file")
    return data[offset : offset + length]


def _entry(key: bytes, value: bytes, charset: str) -> MoEntry | UnicodeDecodeError:
    try:
        ctxt, sep, msgid = key.partition(b"\x04")
        ctxt, msgid = (ctxt, msgid) if sep else (None, ctxt)
        singular, _, plural = msgid.partition(b"\x00")
        return MoEntry(
            msgid=_decode(singular, "ascii" if charset == "ascii" else "utf-8", "msgid"),
            msgstr=[_decode(s, charset, "msgstr") for s in value.split(b"\x00")],
            msgctxt=_decode(ctxt, "utf-8", "msgctxt") if ctxt is not None else None,
            msgid_plural=_decode(plural, "utf-8", "msgid_plural") if plural else None,
        )
    except UnicodeDecodeError as e:
        return e


def read_mo(path: str | Path) -> tuple[dict[str, str], list[MoEntry | UnicodeDecodeError]]:
    """Parse a ``.mo`` file (bounded to 64 MiB)."""
    p = Path(path)
    if p.stat().st_size > MAX_MO_BYTES:
        raise MoError(f"{p.stat().st_size} bytes is over the {MAX_MO_BYTES} byte limit for a catalog")
    return parse_mo(p.read_bytes())


def strip_formats(text: str) -> str:
    """Text with printf/brace/shell placeholders, markup tags, entities and accelerator markers removed."""
    return re.sub(r"(?<=\s)[_&](?=\w)|^[_&](?=\w)", "", _FORMAT.sub(" ", text))


def is_real_text(text: str, min_letters: int = 3, min_words: int = 1) -> bool:
    """True for a phrase or sentence; False for format-only strings, numbers, punctuation and identifiers."""
    if _IDENTIFIER.match(text.strip()):
        return False
    rest = strip_formats(text)
    if sum(ch.isalpha() for ch in rest) < min_letters:
        return False
    return sum(1 for w in rest.split() if any(ch.isalpha() for ch in w)) >= min_words


def unit_id(domain: str, msgctxt: str | None, msgid: str) -> str:
    """Stable id of a semantic unit: hash of catalog domain, msgctxt and English msgid."""
    return hashlib.sha1(f"{domain}\x04{msgctxt or ''}\x04{msgid}".encode()).hexdigest()[:16]


def locale_of(path: str | Path) -> str:
    """Locale code of a catalog from its path (``.../<locale>/LC_MESSAGES/<domain>.mo``)."""
    parts = Path(path).parts
    return parts[-3] if len(parts) >= 3 and parts[-2] == "LC_MESSAGES" else parts[-2]


def flores_key(locale: str, sample_text: str | None = None) -> str:
    """FLORES-200 style key of a gettext locale (``hi`` -> ``hin_Deva``, ``pt_BR`` -> ``por_Latn``, ``zh_CN`` ->
    ``zho_Hans``); see :mod:`curation.languages` for the table and the script guess for locales not in it."""
    return _flores_key(locale, sample_text)


def find_catalogs(root: str | Path, languages: list[str], catalogs: list[str], exclude: list[str],
                  max_catalogs: int | None = None) -> dict[str, list[tuple[str, str]]]:  # fmt: skip
    """Catalog domain -> sorted [(locale, path)] under a locale root, filtered by locale and domain globs."""
    root = Path(root)
    found: dict[str, list[tuple[str, str]]] = {}
    for loc_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        loc = loc_dir.name
        if loc == ENGLISH or not any(fnmatch.fnmatchcase(loc, g) for g in languages):
            continue
        for mo in sorted((loc_dir / "LC_MESSAGES").glob("*.mo")):
            dom = mo.stem
            if any(fnmatch.fnmatchcase(dom, g) for g in catalogs) and not any(
                fnmatch.fnmatchcase(dom, g) for g in exclude
            ):
                found.setdefault(dom, []).append((loc, str(mo)))
    out, total = {}, 0
    for dom in sorted(found):
        if max_catalogs is not None and total >= max_catalogs:
            break
        take = found[dom][: None if max_catalogs is None else max_catalogs - total]
        out[dom], total = take, total + len(take)
    return out


def iter_domain(domain: str, catalogs: list[tuple[str, str]], opts: ReadOptions, min_letters: int, min_words: int,
                skipped: Counter) -> Iterator[Batch]:  # fmt: skip
    """Documents of one catalog domain across its locales: each English msgid once, then its translations."""
    emitted: set[str] = set()
    for loc, path in catalogs:
        yield from iter_catalog(domain, loc, path, emitted, opts, min_letters, min_words, skipped)


def iter_catalog(domain: str, loc: str, path: str, emitted: set[str], opts: ReadOptions, min_letters: int,
                 min_words: int, skipped: Counter) -> Iterator[Batch]:  # fmt: skip
    """Documents of one catalog; an English msgid whose unit is not in ``emitted`` yet comes before its translation."""
    try:
        _, entries = read_mo(path)
    except (MoError, OSError, struct.error) as e:
        yield quarantine(path, "invalid_mo", offset=0, detail=str(e))
        return
    rows: list[dict] = []
    for i, e in enumerate(entries):
        if isinstance(e, UnicodeDecodeError):
            yield quarantine(path, "invalid_utf8", line=i, detail=str(e.reason), raw=e.object)
            continue
        row = _translation(domain, loc, e, opts, min_letters, min_words, skipped)
        if row is None:
            continue
        if row["unit_id"] not in emitted:
            emitted.add(row["unit_id"])
            rows.append(_english(domain, e, row["unit_id"], opts))
        rows.append(row)
    if rows:
        yield rows_to_table(rows)


def _translation(domain: str, loc: str, e: MoEntry, opts: ReadOptions, min_letters: int, min_words: int,
                 skipped: Counter) -> dict | None:  # fmt: skip
    text = e.msgstr[0] if e.msgstr else ""
    if not text.strip():
        skipped["untranslated"] += 1
        return None
    if not is_real_text(e.msgid, min_letters, min_words):
        skipped["format_only"] += 1
        return None
    if not is_real_text(text, 1, 1) or "\x00" in text:
        skipped["format_only_translation"] += 1
        return None
    uid = unit_id(domain, e.msgctxt, e.msgid)
    return {"id": f"{opts.source}:{domain}:{loc}:{uid}", "text": text, "source": opts.source, "lang": loc,
            "domain": opts.domain or "ui", "unit_id": uid}  # fmt: skip


def _english(domain: str, e: MoEntry, uid: str, opts: ReadOptions) -> dict:
    return {"id": f"{opts.source}:{domain}:{ENGLISH}:{uid}", "text": e.msgid, "source": opts.source,
            "lang": ENGLISH, "domain": opts.domain or "ui", "unit_id": uid}  # fmt: skip


def catalog_table(domain: str, catalogs: list[tuple[str, str]], source: str = "gettext") -> pa.Table:
    """All documents of one domain as one table (small catalogs; convenience for notebooks and tests)."""
    tables = [b for b in iter_domain(domain, catalogs, ReadOptions(source=source), 3, 1, Counter())
              if not isinstance(b, Quarantined)]  # fmt: skip
    return pa.concat_tables(tables) if tables else rows_to_table([])
