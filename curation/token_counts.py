"""Token counts per shard, distributed with the stage executors (local processes, Ray, Slurm).

Each shard is streamed in column batches through the same reader tokenizer training uses
(:func:`curation.tokenizer_train.iter_rows`), counted under every tokenizer, and its counts are written atomically to
``<run>/tokens/<source>/shard-XXXXX.json`` with the shard's inputs hash; a rerun skips shards whose file matches, so
a killed worker loses nothing and counts nothing twice. The merge sums the per-shard files into ``counts.json``:
``{"totals": {tok: tokens}, "by_lang": {lang: {"docs", "bytes", "chars", tok: tokens}}}``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from curation.executors import PLACEMENT_FIELDS, ExecutorFields, run_pipeline
from curation.log import get_logger, kv
from curation.rundir import RunDir, hash_obj, sha256_file, write_json

log = get_logger("tokens")


class TokenCountConfig(ExecutorFields):
    """Which shards are counted under which tokenizers, and where the counting runs."""

    tokenizers: list[str] = Field(
        default_factory=lambda: ["tiktoken:cl100k_base"], min_length=1, description="Tokenizer specs to count."
    )
    source: str = Field("curated", description="Stage folder of the shards (curated or corpus) or a directory.")
    split: Literal["all", "train", "heldout"] = Field("all", description="Documents counted (the tokenizer split).")
    batch_size: int = Field(1024, ge=1, le=100_000, description="Rows per streamed batch; more = more memory.")
    tasks: int = Field(2, ge=1, le=100_000, description="Executor tasks; shard i goes to task i % tasks.")
    workers: int = Field(2, ge=1, le=1024, description="Tasks run at once.")


def count_tokens(cfg: TokenCountConfig, run_dir: str) -> dict[str, Any]:
    """Count tokens of every shard of ``cfg.source`` on ``cfg.executor``; returns (and writes) the merged counts."""
    out_dir, jobs = shard_jobs(cfg, run_dir)
    tasks = min(cfg.tasks, len(jobs))
    step = functools.partial(_count_task, cfg.model_dump(), run_dir, jobs)
    logs = f"{out_dir}/_logs/{hash_obj([j[2] for j in jobs])[:16]}"
    where = run_pipeline([step], cfg, tasks=tasks, workers=cfg.workers, logging_dir=logs, skip_completed=False,
                         stage="tokens")  # fmt: skip
    return merge_jobs(out_dir, jobs, where)


def shard_jobs(cfg: TokenCountConfig, run_dir: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The output folder and one ``(shard, output json, inputs hash)`` job per shard of ``cfg.source``."""
    from curation.tokenizer_train import shard_paths

    shards = shard_paths(run_dir, cfg.source)
    if not shards:
        raise FileNotFoundError(f"no shard-*.parquet under {cfg.source!r} of run {run_dir}")
    out_dir = RunDir(run_dir).stage("tokens", Path(cfg.source).name)
    sig = hash_obj(cfg.model_dump(exclude=PLACEMENT_FIELDS | {"tasks", "workers", "batch_size"}))
    return out_dir, [
        (s, f"{out_dir}/{Path(s).stem}.json", hash_obj({"shard": sha256_file(s), "cfg": sig})) for s in shards
    ]


def merge_jobs(out_dir: str, jobs: list[tuple[str, str, str]], where: dict[str, Any]) -> dict[str, Any]:
    """Sum the per-shard files of ``jobs`` into ``<out_dir>/counts.json`` (with where the counting ran)."""
    merged = merge([json.loads(Path(j[1]).read_text()) for j in jobs])
    merged["where"] = where
    write_json(f"{out_dir}/counts.json", merged)
    log.info(kv(stage="tokens", shards=len(jobs), docs=merged["docs"], **merged["totals"], out=out_dir))
    return merged


def _count_task(cfg_dump: dict, run_dir: str, jobs: list, data: Any, rank: int = 0, world_size: int = 1):
    """datatrove pipeline step: count the shards of this rank (shard i -> rank i % world_size)."""
    counters: dict[str, Any] = {}
    for i, job in enumerate(jobs):
        if i % world_size == rank:
            count_job(cfg_dump, run_dir, job, counters)
    yield from ()


def count_job(cfg_dump: dict, run_dir: str, job: tuple[str, str, str], counters: dict | None = None) -> str:
    """Count one shard into its output file unless the file already holds this inputs hash; returns the path."""
    from curation.tokenizer_registry import load_tokenizer

    shard, out, h = job
    if _done(out, h):
        return out
    cfg = TokenCountConfig(**cfg_dump)
    counters = {} if counters is None else counters
    for spec in cfg.tokenizers:
        counters.setdefault(spec, load_tokenizer(spec, run_dir))
    counts = count_shard(shard, {s: counters[s] for s in cfg.tokenizers}, cfg.split, cfg.batch_size)
    write_json(out, {"inputs_hash": h, "shard": Path(shard).name, **counts})
    return out


def _done(out: str, h: str) -> bool:
    try:
        return json.loads(Path(out).read_text()).get("inputs_hash") == h
    except (OSError, ValueError):
        return False


def count_shard(shard: str, counters: dict[str, Any], split: str = "all", batch_size: int = 1024) -> dict[str, Any]:
    """Docs, UTF-8 bytes, characters and tokens per tokenizer, per language, of one shard (streamed)."""
    from curation.tokenizer_train import iter_rows

    splits = [False, True] if split == "all" else [split == "heldout"]
    by_lang: dict[str, dict[str, int]] = {}
    for heldout in splits:
        for b in iter_rows([shard], heldout=heldout, columns=("lang", "text"), batch_size=batch_size):
            encoded = {spec: c.encode_batch(b["text"]) for spec, c in counters.items()}
            for j, (lang, text) in enumerate(zip(b["lang"], b["text"], strict=True)):
                row = by_lang.setdefault(lang or "und", {"docs": 0, "bytes": 0, "chars": 0})
                row["docs"] += 1
                row["bytes"] += len(text.encode("utf-8"))
                row["chars"] += len(text)
                for spec, ids in encoded.items():
                    row[spec] = row.get(spec, 0) + len(ids[j])
    return {"by_lang": by_lang}


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-shard counts: ``by_lang`` rows add key by key; totals per tokenizer and the document count follow."""
    by_lang: dict[str, dict[str, int]] = {}
    for p in parts:
        for lang, row in p["by_lang"].items():
            acc = by_lang.setdefault(lang, {})
            for k, v in row.items():
                acc[k] = acc.get(k, 0) + v
    by_lang = dict(sorted(by_lang.items()))
    keys = {k for row in by_lang.values() for k in row} - {"docs", "bytes", "chars"}
    totals = {k: sum(row.get(k, 0) for row in by_lang.values()) for k in sorted(keys)}
    docs = sum(row["docs"] for row in by_lang.values())
    return {"shards": len(parts), "docs": docs, "totals": totals, "by_lang": by_lang}
