"""Token counts per shard, distributed with the stage executors (local processes, Ray, Slurm).

Each shard is streamed in column batches through the same reader tokenizer training uses
(:func:`curation.tokenizer.train.iter_rows`), counted under every tokenizer, and its counts are written atomically to
``<run>/tokens/<source>/shard-XXXXX.json`` with the shard's inputs hash; a rerun skips shards whose file matches, so
a killed worker loses nothing and counts nothing twice. The merge sums the per-shard files into ``counts.json``:
``{"totals": {tok: tokens}, "by_lang": {lang: {"docs", "bytes", "chars", tok: tokens}}}`` and writes the stage marker
``<run>/tokens/<source>/_DONE.json`` holding the hash of every shard's inputs hash, so the demo stage
(:func:`run_stage`, config section ``tokens:``) skips a run whose shards and config have not changed.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from curation.executors import PLACEMENT_FIELDS, ExecutorFields, run_pipeline
from curation.tokenizer.data import iter_rows, shard_paths
from tokenwise.config import load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, read_json, sha256_file, write_json
from tokenwise.tokenizer_specs import load_tokenizer

log = logging.getLogger(__name__)


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


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``tokens``: token counts of the ``tokens:`` section's shards; skipped when its marker matches."""
    return fmt_counts(count_stage(load_section(config_path, "tokens", TokenCountConfig), run_dir))


def count_stage(cfg: TokenCountConfig, run_dir: str, force: bool = False) -> dict[str, Any]:
    """The merged counts: the stored ones (``up_to_date: True``) when the stage marker matches, else counted now."""
    out_dir, jobs = shard_jobs(cfg, run_dir)
    done = None if force else stored_counts(out_dir, jobs)
    return done if done is not None else count_jobs(cfg, run_dir, out_dir, jobs)


def fmt_counts(counts: dict[str, Any]) -> str:
    """One line: shards, documents, tokens per tokenizer and where the counting ran."""
    where = counts.get("where") or {}
    toks = ", ".join(f"{tok} {n:,}" for tok, n in counts["totals"].items())
    place = f"{where.get('executor', '?')}, {where.get('workers', len(where.get('pids', [])) or '?')} workers"
    line = f"{counts['shards']} shards, {counts['docs']:,} docs: {toks} tokens ({place})"
    return f"up to date: {line}" if counts.get("up_to_date") else line


def count_tokens(cfg: TokenCountConfig, run_dir: str) -> dict[str, Any]:
    """Count tokens of every shard of ``cfg.source`` on ``cfg.executor``; returns (and writes) the merged counts.

    Shards whose output already holds their inputs hash are not counted again; the stage marker is not consulted
    (:func:`run_stage` is the stage that skips a finished run without starting the executor).
    """
    out_dir, jobs = shard_jobs(cfg, run_dir)
    return count_jobs(cfg, run_dir, out_dir, jobs)


def count_jobs(cfg: TokenCountConfig, run_dir: str, out_dir: str, jobs: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Run the per-shard ``jobs`` of :func:`shard_jobs` on ``cfg.executor`` and merge them."""
    tasks = min(cfg.tasks, len(jobs))
    step = functools.partial(_count_task, cfg.model_dump(), run_dir, jobs)
    logs = f"{out_dir}/_logs/{jobs_hash(jobs)}"
    where = run_pipeline([step], cfg, tasks=tasks, workers=cfg.workers, logging_dir=logs, skip_completed=False,
                         stage="tokens")  # fmt: skip
    return merge_jobs(out_dir, jobs, where)


def shard_jobs(cfg: TokenCountConfig, run_dir: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The output folder and one ``(shard, output json, inputs hash)`` job per shard of ``cfg.source``."""
    shards = shard_paths(run_dir, cfg.source)
    if not shards:
        raise FileNotFoundError(f"no shard-*.parquet under {cfg.source!r} of run {run_dir}")
    out_dir = RunDir(run_dir).stage("tokens", Path(cfg.source).name)
    what = cfg.model_dump(exclude=PLACEMENT_FIELDS | {"tasks", "workers", "batch_size"})
    sig = hash_obj({"config": what, "files": _tokenizer_files(cfg, run_dir)})
    return out_dir, [
        (s, f"{out_dir}/{Path(s).stem}.json", hash_obj({"shard": sha256_file(s), "cfg": sig})) for s in shards
    ]


def _tokenizer_files(cfg: TokenCountConfig, run_dir: str) -> dict[str, str]:
    """Hashes of the ``run:`` tokenizers' files: retraining one recounts every shard."""
    return {
        spec: sha256_file(Path(run_dir) / "tokenizers" / spec[4:] / "tokenizer.json")
        for spec in cfg.tokenizers
        if spec.startswith("run:") and (Path(run_dir) / "tokenizers" / spec[4:] / "tokenizer.json").is_file()
    }


def jobs_hash(jobs: list[tuple[str, str, str]]) -> str:
    """The stage's inputs hash: every shard's inputs hash (content + config), in shard order."""
    return hash_obj([j[2] for j in jobs])


def stored_counts(out_dir: str, jobs: list[tuple[str, str, str]]) -> dict[str, Any] | None:
    """The merged counts of an earlier run with exactly these jobs (its marker matches), else None."""
    rd, stage = _stage_of(out_dir)
    try:
        if rd.is_done(stage, jobs_hash(jobs)):
            return read_json(f"{out_dir}/counts.json") | {"up_to_date": True}
    except (OSError, ValueError):
        pass
    return None


def _stage_of(out_dir: str) -> tuple[RunDir, str]:
    """The run and stage name (``tokens/<source>``) of a counts folder ``<run>/tokens/<source>``."""
    p = Path(out_dir)
    return RunDir(str(p.parent.parent)), f"{p.parent.name}/{p.name}"


def merge_jobs(out_dir: str, jobs: list[tuple[str, str, str]], where: dict[str, Any]) -> dict[str, Any]:
    """Sum the per-shard files of ``jobs`` into ``<out_dir>/counts.json``, then write the stage marker.

    ``where`` (where the counting ran) is stored beside the counts; the marker holds :func:`jobs_hash` of ``jobs``.
    """
    merged = merge([json.loads(Path(j[1]).read_text()) for j in jobs])
    merged["where"] = where
    write_json(f"{out_dir}/counts.json", merged)
    summary = {"shards": merged["shards"], "docs": merged["docs"], "totals": merged["totals"]}
    rd, stage = _stage_of(out_dir)
    rd.mark_done(stage, jobs_hash(jobs), summary)
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
