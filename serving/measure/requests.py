"""The held-out request set: prompts with reference continuations, stratified by language and domain.

Requests are cut from documents in the held-out split (:func:`tokenwise.splits.is_heldout`, by unit), which no
training stage reads, so no model has seen a request or any translation of it.
"""

from __future__ import annotations

import glob
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tokenwise.rundir import atomic_open
from tokenwise.splits import is_heldout


def cut(text: str, prompt_bytes: int, reference_bytes: int) -> tuple[str, str] | None:
    """Split text into (prompt, reference) at UTF-8 character boundaries, preferring a whitespace cut."""
    raw = text.encode("utf-8")
    if len(raw) < prompt_bytes + reference_bytes // 2:
        return None
    prompt = raw[:prompt_bytes].decode("utf-8", errors="ignore")
    ws = max(prompt.rfind(" "), prompt.rfind("\n"))
    if ws > len(prompt) // 2:
        prompt = prompt[: ws + 1]
    start = len(prompt.encode("utf-8"))
    reference = raw[start : start + reference_bytes].decode("utf-8", errors="ignore")
    return (prompt, reference) if prompt.strip() and reference.strip() else None


def build_requests(run_dir: str, n: int, prompt_bytes: int, reference_bytes: int, seed: int = 0,
                   languages: list[str] | None = None, source: str = "curated") -> list[dict[str, Any]]:  # fmt: skip
    """Up to ``n`` requests, balanced over (language, domain) strata, deterministic for a seed."""
    shards = sorted(glob.glob(f"{run_dir}/{source}/shard-*.parquet")) or sorted(
        glob.glob(f"{run_dir}/corpus/shard-*.parquet")
    )
    if not shards:
        raise FileNotFoundError(f"{run_dir}: no {source}/ or corpus/ shards; run `tokenwise corpus build` first")
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for shard in shards:
        for r in pq.read_table(shard, columns=["id", "text", "lang", "domain", "unit_id"]).to_pylist():
            if languages and r["lang"] not in languages:
                continue
            if not is_heldout(r["id"], r["unit_id"]):
                continue
            pair = cut(r["text"], prompt_bytes, reference_bytes)
            if pair:
                strata[(r["lang"] or "und", r["domain"] or "und")].append(
                    {
                        "doc_id": r["id"],
                        "language": r["lang"] or "und",
                        "domain": r["domain"] or "und",
                        "prompt": pair[0],
                        "reference": pair[1],
                    }  # fmt: skip
                )
    rng = random.Random(seed)
    for docs in strata.values():
        rng.shuffle(docs)
    out: list[dict[str, Any]] = []
    keys = sorted(strata)
    while len(out) < n and any(strata[k] for k in keys):
        for k in keys:
            if strata[k] and len(out) < n:
                out.append(strata[k].pop())
    for i, r in enumerate(out):
        r["request_id"] = f"req-{i:05d}"
    return out


def write_requests(requests: list[dict[str, Any]], path: str) -> None:
    """The request set as JSONL (the exact prompts replayed through every stack)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_requests(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
