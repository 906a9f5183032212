"""External parallel sets for ``tokenizer eval --parallel`` and parity dev sets: JSONL read into :class:`HeldOut`.

Two layouts, told apart per line:

- wide: one object per unit, one key per language (``{"id": "u1", "eng_Latn": "...", "mya_Mymr": "..."}``); the
  unit is ``unit_id`` or ``id`` when present, else ``<file>:<line>``;
- long: one object per translation (``{"unit_id": "u1", "lang": "my", "text": "..."}``).

Language keys may be locales (``my``, ``zh_CN``) or FLORES keys (``mya_Mymr``); FLORES keys of known languages map to
their locale so English is recognised (``eng_Latn`` -> ``en``). Bad rows (not JSON, not an object, empty or non-string
text, a unit given twice in one language) are quarantined with file, line and reason; the rest is read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from curation.languages import locale_of_key
from curation.tokenizer.config import TokenizerEvalError
from curation.tokenizer.data import HeldOut
from tokenwise.log import kv

log = logging.getLogger(__name__)

META_KEYS = ("id", "unit_id", "domain", "source")


def read_parallel(path: str | Path, domain: str = "parallel") -> tuple[HeldOut, dict[str, Any]]:
    """Every translation of every unit in ``path`` as documents; returns (documents, read stats with quarantine)."""
    p = Path(path)
    if not p.is_file():
        raise TokenizerEvalError(f"parallel set {p}: no such file")
    data, seen = HeldOut(), set()
    quarantine: list[dict[str, Any]] = []
    lines = 0
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            lines += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                quarantine.append({"file": str(p), "line": lineno, "reason": f"not_utf8: byte {e.start} of the line"})
                continue
            for unit, lang, text, dom, reason in _rows(line, p.name, lineno):
                if reason is None and (unit, lang) in seen:
                    reason = f"duplicate_unit_lang: unit {unit!r} already has a {lang!r} text"
                if reason:
                    quarantine.append({"file": str(p), "line": lineno, "reason": reason})
                    continue
                seen.add((unit, lang))
                data.add(f"{unit}/{lang}", unit, lang, dom or domain, text)
    if quarantine:
        log.warning(
            "parallel set rows quarantined %s",
            kv(
                path=str(p),
                quarantined=len(quarantine),
                first=f"line {quarantine[0]['line']}: {quarantine[0]['reason']}",
            ),
        )
    if not len(data):
        first = f"; line {quarantine[0]['line']}: {quarantine[0]['reason']}" if quarantine else ""
        raise TokenizerEvalError(f"parallel set {p}: no usable rows in {lines} line(s){first}")
    units = set(data.units)
    stats = {
        "path": str(p),
        "lines": lines,
        "units": len(units),
        "documents": len(data),
        "languages": sorted(set(data.langs)),
        "quarantined": len(quarantine),
        "quarantine": quarantine,
    }
    return data, stats


def _rows(line: str, name: str, lineno: int):
    """(unit, lang, text, domain, reason) for each translation on one line; reason is None for a good row."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        yield None, None, None, None, f"bad_json: {e.msg} at column {e.colno}"
        return
    if not isinstance(obj, dict):
        yield None, None, None, None, f"not_an_object: got {type(obj).__name__}"
        return
    dom = obj.get("domain") if isinstance(obj.get("domain"), str) else None
    if "lang" in obj or "text" in obj:
        if "lang" not in obj or "text" not in obj:
            yield None, None, None, None, "long_row_incomplete: long rows need unit_id, lang and text"
            return
        unit = obj.get("unit_id")
        if not isinstance(unit, str | int) or unit == "":
            yield None, None, None, None, "missing_unit_id: long rows need unit_id, lang and text"
            return
        yield _checked(str(unit), obj["lang"], obj["text"], dom)
        return
    unit = obj.get("unit_id", obj.get("id"))
    unit = str(unit) if isinstance(unit, str | int) and unit != "" else f"{name}:{lineno}"
    langs = [k for k in obj if k not in META_KEYS]
    if not langs:
        yield None, None, None, None, "no_languages: expected one key per language or unit_id + lang + text"
        return
    for key in langs:
        yield _checked(unit, key, obj[key], dom)


def _checked(unit: str, lang: Any, text: Any, dom: str | None):
    if not isinstance(lang, str) or not lang.strip():
        return unit, None, None, dom, f"bad_lang: {lang!r}"
    if not isinstance(text, str):
        return unit, lang, None, dom, f"bad_text: {lang} text is {type(text).__name__}, not a string"
    if not text.strip():
        return unit, lang, None, dom, f"empty_text: {lang} text is empty"
    return unit, locale_of_key(lang.strip()), text, dom, None
