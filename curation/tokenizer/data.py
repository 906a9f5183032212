"""Reading curated shards for tokenizer training and evaluation: shard lists, split-aware row batches, data hashes,
the parity dev split and the evaluation set (:class:`HeldOut`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tokenwise.rundir import hash_obj, sha256_file
from tokenwise.splits import HELDOUT_FRACTION, is_heldout, split_position


@dataclass
class HeldOut:
    """Evaluation documents as parallel arrays (one entry per document)."""

    ids: list[str] = field(default_factory=list)
    units: list[str | None] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, doc_id: str, unit: str | None, lang: str, domain: str, text: str) -> None:
        """Append one document."""
        self.ids.append(doc_id)
        self.units.append(unit)
        self.langs.append(lang)
        self.domains.append(domain)
        self.texts.append(text)


def is_dev(doc_id: str, unit_id: str | None, fraction: float) -> bool:
    """True for a training-split document whose unit hashes into the dev share, just above the held-out split (so
    dev, held-out and training units never overlap)."""
    return unit_id is not None and HELDOUT_FRACTION <= split_position(doc_id, unit_id) < HELDOUT_FRACTION + fraction


def shard_paths(run_dir: str, source: str = "curated") -> list[str]:
    """The Parquet shards of a stage (``<run>/curated/shard-*.parquet``), sorted."""
    root = Path(source) if os.sep in source or Path(source).is_dir() else Path(run_dir) / source
    return sorted(str(p) for p in root.glob("shard-*.parquet"))


def iter_rows(
    shards: list[str],
    heldout: bool,
    columns: tuple[str, ...] = ("id", "unit_id", "lang", "domain", "text"),
    batch_size: int = 2048,
) -> Iterator[dict[str, list]]:
    """Column batches of the training split (``heldout=False``) or the held-out split, one shard batch at a time."""
    cols = list(dict.fromkeys(("id", "unit_id", *columns)))
    for path in shards:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=cols):
            d = batch.to_pydict()
            keep = [is_heldout(i, u) == heldout for i, u in zip(d["id"], d["unit_id"], strict=True)]
            if not any(keep):
                continue
            yield {c: [x for x, k in zip(d[c], keep, strict=True) if k] for c in columns}


def scan(shards: list[str], alphabet: bool = False) -> dict[str, Any]:
    """Characters and documents per (lang, domain) in the training split; optionally the set of characters seen."""
    chars: dict[str, dict[str, int]] = {}
    docs: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for b in iter_rows(shards, heldout=False, columns=("lang", "domain", "text")):
        for lang, dom, text in zip(b["lang"], b["domain"], b["text"], strict=True):
            lang, dom = lang or "und", dom or "none"
            chars.setdefault(lang, {}).setdefault(dom, 0)
            chars[lang][dom] += len(text)
            docs.setdefault(lang, {}).setdefault(dom, 0)
            docs[lang][dom] += 1
            if alphabet:
                seen.update(text)
    return {"chars": chars, "docs": docs, "alphabet": len(seen) if alphabet else None}


def manifest_hash(shards: list[str]) -> str:
    """Hash of the training data: every shard's name and sha256."""
    return hash_obj([(Path(p).name, sha256_file(p)) for p in shards])
