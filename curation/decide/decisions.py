"""Decisions from stored signals: rules (signal + threshold + direction) → keep/drop with a snake_case reason.

Scorers score, filters decide. ``tokenwise curate decide`` reads ``<run>/signals/shard-*.parquet`` (and
``signals/dedup/``), applies the rules of the ``decide`` config section in order (the first failing rule gives the
reason, as in a datatrove pipeline), and writes under ``<run>/curated/``:

- ``shard-NNNNN.parquet``: kept documents (CORPUS_SCHEMA), joined back from the corpus shards;
- ``decisions.parquet``: ``id, lang, domain, status (kept|dropped|quarantined), keep, reason`` and one
  ``pass_<rule>`` column per enabled rule (each rule evaluated on its own, null where the value was missing);
- ``stats.json``: datatrove's PipelineStats JSON (one block per step with ``total, forwarded, dropped,
  dropped_<reason>``; plus ``chars_*``, ``tokens_<tok>_*`` and ``lang=<l>/...``, ``domain=<d>/...`` counts), readable
  by datatrove's ``merge_stats``; ``stats/shard-NNNNN.json`` are the per-shard parts it is the sum of;
- ``summary.json``: input/kept/dropped/quarantined (they reconcile), token cost per rule, and the per-step table
  (documents, characters, tokens in/kept/dropped per step overall, per language and per domain);
- ``histograms.json``: every numeric signal as ``{hist, bin_edges}`` with its rule's threshold and the share of
  documents and tokens on each side; ``quarantine/decide.jsonl``: rows that could not be decided, with the reason.

``tokenwise curate whatif --set rule=value`` runs the same pure function (:func:`decide_table`) with changed
thresholds and writes only decisions + stats (no corpus join) under ``curated/whatif/<name>/``, in seconds.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from tokenwise.config import BaseConfig, load_section
from tokenwise.documents import CORPUS_SCHEMA, Quarantined
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, read_json, write_json

log = logging.getLogger(__name__)
KEPT, DROPPED, QUARANTINED = "kept", "dropped", "quarantined"


class Rule(BaseConfig):
    """Drop a document when ``signal`` is ``drop_if`` (``lt``/``gt``) ``threshold``; a null threshold turns it off."""

    signal: str = Field(..., description="Signal column in signals/ (or dedup/) shards.")
    drop_if: Literal["lt", "gt"] = Field(..., description="lt: drop values below threshold; gt: drop values above.")
    threshold: float | None = Field(..., description="The threshold; null disables the rule.")


class DecideConfig(BaseConfig):
    """Filter config applied to stored signals; rule names are the snake_case drop reasons, applied in order."""

    rules: dict[str, Rule] = Field(
        default_factory=lambda: {
            "lang_low_score": Rule(signal="lid_score", drop_if="lt", threshold=0.3),
            "gopher_short_doc": Rule(signal="gopher_n_non_symbol_words", drop_if="lt", threshold=None),
            "quality_low": Rule(signal="quality_score", drop_if="lt", threshold=None),
        },
        description="reason -> rule, applied in order; the first failing rule is the document's reason.",
    )
    allowed_langs: list[str] | None = Field(
        None, description="Languages kept (reason lang_not_allowed); null keeps every language."
    )
    lang_column: str = Field("lang", description="Column giving the language (corpus `lang` or LID `lid_label`).")
    dedup: bool = Field(True, description="Drop non-representative duplicates (reason dup_not_representative).")
    reference_tokenizer: str = Field(
        "cl100k_base", description="Tokenizer whose tokens_<name> column costs decisions."
    )
    hist_bins: int = Field(30, ge=2, le=1000, description="Bins per signal histogram.")

    @field_validator("rules")
    @classmethod
    def _snake_case(cls, v: dict[str, Rule]) -> dict[str, Rule]:
        for name in v:
            if not name.replace("_", "").isalnum() or name != name.lower():
                raise ValueError(f"rule name {name!r} must be a snake_case reason like gopher_short_doc")
        return v


@dataclass
class Decisions:
    """Decision arrays for one signals table (row order of the table)."""

    table: pa.Table  # the signals (+ dedup) columns used
    status: np.ndarray  # [N] str: kept|dropped|quarantined
    reason: np.ndarray  # [N] str
    passes: dict[str, np.ndarray]  # rule -> [N] float (1 pass, 0 fail, nan missing)
    order: list[str]  # rules in application order (enabled only)


# ---------------------------------------------------------------- loading


def signal_shards(run: RunDir) -> list[str]:
    """Signals shards (not the dedup ones) in order."""
    return sorted(glob.glob(run.path("signals", "shard-*.parquet")))


def load_signals(run_dir: str, cfg: DecideConfig) -> pa.Table:
    """All signal shards as one table with ``_shard`` and ``_row``, left-joined with dedup columns when present."""
    run = RunDir(run_dir)
    files = signal_shards(run)
    if not files:
        raise FileNotFoundError(f"{run.path('signals')}: no signals shards; run `tokenwise curate score` first")
    parts = []
    for i, f in enumerate(files):
        t = pq.read_table(f)
        if "id" not in t.column_names:
            raise ValueError(f"{f}: signals shard has no `id` column (columns: {t.column_names})")
        t = t.append_column("_shard", pa.array(np.full(len(t), i, np.int32)))
        parts.append(t.append_column("_row", pa.array(np.arange(len(t), dtype=np.int64))))
    table = normalise_names(pa.concat_tables(parts, promote_options="permissive"))
    return _join_dedup(run, table, cfg)


# the scorer's size columns may be named bytes/chars/words; decisions and plans use n_bytes/n_chars/n_words
SIGNAL_ALIASES = {"bytes": "n_bytes", "chars": "n_chars", "words": "n_words"}


def normalise_names(table: pa.Table) -> pa.Table:
    """Rename ``bytes/chars/words`` to ``n_bytes/n_chars/n_words`` when only the short names exist."""
    names = [
        SIGNAL_ALIASES.get(c, c) if SIGNAL_ALIASES.get(c) not in table.column_names else c for c in table.column_names
    ]
    return table.rename_columns(names)


def _join_dedup(run: RunDir, table: pa.Table, cfg: DecideConfig) -> pa.Table:
    files = sorted(glob.glob(run.path("signals", "dedup", "shard-*.parquet")))
    if not files:
        if cfg.dedup:
            raise FileNotFoundError(
                f"{run.path('signals', 'dedup')}: no dedup shards; "
                "run `tokenwise curate dedup` or set decide.dedup: false"
            )
        return table
    dd = pa.concat_tables([pq.read_table(f) for f in files])
    dd = dd.drop_columns([c for c in dd.column_names if c != "id" and c in table.column_names])
    if pc.count_distinct(dd.column("id")).as_py() != len(dd):  # a repeated corpus id must not multiply signal rows
        _, first = np.unique(dd.column("id").to_numpy(zero_copy_only=False).astype(str), return_index=True)
        dd = dd.take(np.sort(first))
    joined = table.join(dd, "id", join_type="left outer")
    return joined.sort_by([("_shard", "ascending"), ("_row", "ascending")])


# ---------------------------------------------------------------- the decision function


def _values(table: pa.Table, col: str) -> np.ndarray:
    if col not in table.column_names:
        return np.full(len(table), np.nan)
    arr = table.column(col)
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _strings(table: pa.Table, col: str, fill: str = "und") -> np.ndarray:
    if col not in table.column_names:
        return np.full(len(table), fill, dtype=object)
    return np.array([fill if v is None else v for v in table.column(col).to_pylist()], dtype=object)


def check_columns(table: pa.Table, cfg: DecideConfig, where: str) -> None:
    """Fail fast when an enabled rule's signal is absent from every shard (a config or scorer mismatch)."""
    need = [r.signal for r in cfg.rules.values() if r.threshold is not None]
    need.append(f"tokens_{cfg.reference_tokenizer}")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        have = sorted(c for c in table.column_names if not c.startswith("_"))
        raise ValueError(f"{where}: signal column(s) {missing} not found; available: {have}. Fix the decide config.")
    empty = [c for c in need if len(table) and table.column(c).null_count == len(table)]
    if empty:
        raise ValueError(
            f"{where}: signal column(s) {empty} are null for every document (e.g. quality_score without a trained "
            "quality model); run the stage that fills them or set those rules' threshold to null"
        )


def decide_table(table: pa.Table, cfg: DecideConfig) -> Decisions:
    """Apply the rules to a signals table; pure and vectorised (what-if and decide both call this)."""
    n = len(table)
    status = np.full(n, KEPT, dtype=object)
    reason = np.full(n, "", dtype=object)
    _quarantine(table, cfg, status, reason)
    order, passes = [], {}
    if cfg.allowed_langs is not None:
        langs = _strings(table, cfg.lang_column)
        passes["lang_not_allowed"] = np.isin(langs, cfg.allowed_langs).astype(np.float64)
        order.append("lang_not_allowed")
    for name, rule in cfg.rules.items():
        if rule.threshold is None:
            continue
        v = _values(table, rule.signal)
        ok = v >= rule.threshold if rule.drop_if == "lt" else v <= rule.threshold
        passes[name] = np.where(np.isnan(v), np.nan, ok.astype(np.float64))
        order.append(name)
    if cfg.dedup and "dup_is_representative" in table.column_names:
        passes["dup_not_representative"] = _values(table, "dup_is_representative")
        order.append("dup_not_representative")
    for name in order:
        fail = (status == KEPT) & (passes[name] == 0)
        status[fail], reason[fail] = DROPPED, name
    return Decisions(table, status, reason, passes, order)


def _quarantine(table: pa.Table, cfg: DecideConfig, status: np.ndarray, reason: np.ndarray) -> None:
    """Mark rows that cannot be decided: a needed signal missing/NaN, or an id seen before."""
    need = [r.signal for r in cfg.rules.values() if r.threshold is not None]
    need.append(f"tokens_{cfg.reference_tokenizer}")
    if cfg.dedup and "dup_is_representative" in table.column_names:
        need.append("dup_is_representative")
    for col in need:
        bad = np.isnan(_values(table, col)) & (status == KEPT)
        status[bad], reason[bad] = QUARANTINED, f"signal_missing:{col}"
    ids = table.column("id").to_pylist()
    seen: set[str] = set()
    for i, doc_id in enumerate(ids):
        if doc_id is None or doc_id in seen:
            if status[i] == KEPT:
                status[i], reason[i] = QUARANTINED, "duplicate_id" if doc_id else "missing_id"
        seen.add(doc_id)


# ---------------------------------------------------------------- tables: per step, per language, per domain


def _token_cols(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c.startswith("tokens_")]


def _measures(d: Decisions) -> dict[str, np.ndarray]:
    t = d.table
    out = {"docs": np.ones(len(t)), "chars": np.nan_to_num(_values(t, "n_chars"))}
    for c in _token_cols(t):
        out[c] = np.nan_to_num(_values(t, c))
    return out


def step_masks(d: Decisions) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(step, reaching mask, dropped-here mask) for the quarantine step and each rule in order."""
    alive = d.status != QUARANTINED
    steps = [("signals", np.ones(len(d.status), bool), ~alive)]
    for name in d.order:
        dropped = alive & (d.reason == name)
        steps.append((name, alive.copy(), dropped))
        alive &= ~dropped
    return steps


def step_table(d: Decisions, reference: str) -> list[dict[str, Any]]:
    """Rows ``{step, group_by, group, <m>_in, <m>_kept, <m>_dropped}`` for m in docs, chars, every tokens_*."""
    meas = _measures(d)
    groups = {"all": np.zeros(len(d.status), np.int64)}
    labels = {"all": np.array(["all"], dtype=object)}
    for by, col in (("lang", "lang"), ("domain", "domain")):
        labels[by], groups[by] = np.unique(_strings(d.table, col).astype(str), return_inverse=True)
    rows = []
    for step, reach, drop in step_masks(d):
        for by, inv in groups.items():
            k = len(labels[by])
            sums = {m: (np.bincount(inv, v * reach, k), np.bincount(inv, v * drop, k)) for m, v in meas.items()}
            for gi, g in enumerate(labels[by]):
                row: dict[str, Any] = {"step": step, "group_by": by, "group": str(g)}
                for m, (s_in, s_drop) in sums.items():
                    row[f"{m}_in"] = _num(s_in[gi])
                    row[f"{m}_dropped"] = _num(s_drop[gi])
                    row[f"{m}_kept"] = _num(s_in[gi] - s_drop[gi])
                row["docs_dropped_share"] = row["docs_dropped"] / row["docs_in"] if row["docs_in"] else 0.0
                rows.append(row)
    return rows


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


# ---------------------------------------------------------------- datatrove-compatible stats


def _metric(values: np.ndarray, unit: str = "doc"):
    from datatrove.utils.stats import MetricStats  # heavy: deferred until used

    n = len(values)
    if n == 0:
        return MetricStats(unit=unit)
    mean = float(values.mean())
    var = float(values.var(ddof=1)) if n > 1 else 0.0
    return MetricStats(
        total=_num(values.sum()), n=n, mean=mean, min=_num(values.min()), max=_num(values.max()),
        _running_variance=var * (n - 1), unit=unit,
    )  # fmt: skip


def pipeline_stats(d: Decisions, reference: str, rows: np.ndarray | None = None, cache: dict | None = None):
    """datatrove PipelineStats for the decisions (optionally a subset of rows, e.g. one shard).

    ``cache`` holds the per-row arrays shared by every shard's call, so each call costs O(rows in the subset).
    """
    from datatrove.utils.stats import PipelineStats, Stats  # heavy: deferred until used

    c = cache if cache is not None else {}
    if not c:
        c |= {"meas": _measures(d), "langs": _strings(d.table, "lang"), "domains": _strings(d.table, "domain"),
              "steps": step_masks(d)}  # fmt: skip
    idx = np.arange(len(d.status)) if rows is None else np.flatnonzero(rows)
    meas = {m: v[idx] for m, v in c["meas"].items()}
    langs, domains, reason = c["langs"][idx], c["domains"][idx], d.reason[idx]
    blocks = []
    for step, reach_all, drop_all in c["steps"]:
        st = Stats(step)
        reach, drop = reach_all[idx], drop_all[idx]
        kept = reach & ~drop
        for key, mask in (("total", reach), ("forwarded", kept), ("dropped", drop)):
            _add_counts(st, key, mask, meas, f"tokens_{reference}", langs, domains)
        if step == "signals":
            for r in sorted(set(reason[drop])):
                st[f"dropped_{r}"] = _metric(np.ones(int((drop & (reason == r)).sum())))
        elif drop.any():
            st[f"dropped_{step}"] = _metric(np.ones(int(drop.sum())))
        blocks.append(st)
    return PipelineStats(blocks)


def _add_counts(st, key: str, mask: np.ndarray, meas: dict, tok: str, langs, domains) -> None:
    if not mask.any():
        return
    st[key] = _metric(np.ones(int(mask.sum())))
    for m, v in meas.items():
        if m != "docs":
            st[f"{m}_{key}"] = _metric(v[mask], unit=m.removeprefix("tokens_") if m != "chars" else "char")
    for prefix, labels in (("lang", langs), ("domain", domains)):
        for g in sorted(set(labels[mask])):
            st[f"{prefix}={g}/{key}"] = _metric(np.ones(int((mask & (labels == g)).sum())))
            if tok in meas:
                st[f"{prefix}={g}/{tok}_{key}"] = _metric(meas[tok][mask & (labels == g)], unit="token")


# ---------------------------------------------------------------- histograms


def histograms(d: Decisions, cfg: DecideConfig) -> dict[str, Any]:
    """``{signal: {hist, bin_edges, n, [rule, threshold, drop_if, docs_below/above, tokens_below/above]}}``."""
    ok = d.status != QUARANTINED
    tok = np.nan_to_num(_values(d.table, f"tokens_{cfg.reference_tokenizer}"))
    by_signal = {r.signal: (name, r) for name, r in cfg.rules.items()}
    out = {}
    for col in d.table.column_names:
        if col.startswith("_") or not _numeric(d.table.schema.field(col).type):
            continue
        v = _values(d.table, col)
        fin = ok & np.isfinite(v)
        if not fin.any():
            continue
        hist, edges = np.histogram(v[fin], bins=cfg.hist_bins)
        entry: dict[str, Any] = {"hist": hist.tolist(), "bin_edges": edges.tolist(), "n": int(fin.sum())}
        if col in by_signal and by_signal[col][1].threshold is not None:
            name, rule = by_signal[col]
            below = fin & (v < rule.threshold)
            above = fin & (v > rule.threshold)
            tsum = tok[fin].sum() or 1.0
            entry |= {
                "rule": name, "threshold": rule.threshold, "drop_if": rule.drop_if,
                "docs_below": float(below.sum() / fin.sum()), "docs_above": float(above.sum() / fin.sum()),
                "tokens_below": float(tok[below].sum() / tsum), "tokens_above": float(tok[above].sum() / tsum),
            }  # fmt: skip
        out[col] = entry
    return out


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


# ---------------------------------------------------------------- summary + writers


def summary(d: Decisions, cfg: DecideConfig) -> dict[str, Any]:
    """Counts that reconcile, token cost per rule and the per-step table."""
    n = len(d.status)
    counts = {s: int((d.status == s).sum()) for s in (KEPT, DROPPED, QUARANTINED)}
    ref = f"tokens_{cfg.reference_tokenizer}"
    tok = np.nan_to_num(_values(d.table, ref))
    cost = {name: _num(tok[d.reason == name].sum()) for name in d.order}
    by_reason = {r: int((d.reason == r).sum()) for r in sorted(set(d.reason.tolist())) if r}
    return {
        "input": n, **counts, "reconciles": n == sum(counts.values()),
        "reference_tokenizer": cfg.reference_tokenizer, "tokens_input": _num(tok.sum()),
        "tokens_kept": _num(tok[d.status == KEPT].sum()), "token_cost": cost, "by_reason": by_reason,
        "rules": [
            {"name": k, "signal": cfg.rules[k].signal if k in cfg.rules else None,
             "threshold": cfg.rules[k].threshold if k in cfg.rules else None,
             "drop_if": cfg.rules[k].drop_if if k in cfg.rules else None}
            for k in d.order
        ],
        "steps": step_table(d, cfg.reference_tokenizer), "config": cfg.model_dump(),
    }  # fmt: skip


def decisions_table(d: Decisions) -> pa.Table:
    """The decisions.parquet table."""
    cols: dict[str, Any] = {
        "id": d.table.column("id"),
        "lang": pa.array(_strings(d.table, "lang").tolist(), pa.string()),
        "domain": pa.array(_strings(d.table, "domain").tolist(), pa.string()),
        "status": pa.array(d.status.tolist(), pa.string()),
        "keep": pa.array(d.status == KEPT),
        "reason": pa.array(d.reason.tolist(), pa.string()),
    }
    for name in d.order:
        p = d.passes[name]
        cols[f"pass_{name}"] = pa.array(np.where(np.isnan(p), False, p == 1), mask=np.isnan(p))
    return pa.table(cols)


def upstream(run: RunDir) -> dict[str, Any] | None:
    """Rows the scorer quarantined before they reached signals/ (from ``signals/manifest.json``), so that
    corpus rows = scored + score-quarantined = kept + dropped + quarantined + score-quarantined."""
    if not run.exists("signals", "manifest.json"):
        return None

    t = read_json(run.path("signals", "manifest.json")).get("totals", {})
    return {"corpus_rows": t.get("rows_in"), "score_quarantined": t.get("rows_quarantined")}


def write_decisions(d: Decisions, cfg: DecideConfig, out: str, up: dict | None = None) -> dict[str, Any]:
    """decisions.parquet, stats.json (+ per-shard parts), summary.json, histograms.json, quarantine/decide.jsonl."""
    with atomic_open(f"{out}/decisions.parquet", "wb") as f:
        pq.write_table(decisions_table(d), f)
    shards = np.asarray(d.table.column("_shard").to_numpy())
    from datatrove.utils.stats import PipelineStats  # heavy: deferred until used

    total, cache = PipelineStats(), {}
    for s in np.unique(shards):
        part = json.loads(pipeline_stats(d, cfg.reference_tokenizer, shards == s, cache).to_json())
        write_json(f"{out}/stats/shard-{int(s):05d}.json", part)
        total = total + PipelineStats.from_json(part)  # exactly what datatrove's merge_stats computes
    _drop_others(f"{out}/stats", "shard-*.json", set(np.unique(shards).tolist()))  # parts an earlier run had
    write_json(f"{out}/stats.json", json.loads(total.to_json()))
    summ = summary(d, cfg)
    if up and up.get("corpus_rows") is not None:
        summ["upstream"] = up | {
            "reconciles": up["corpus_rows"] == summ["input"] + (up["score_quarantined"] or 0),
        }
    write_json(f"{out}/summary.json", summ)
    write_json(f"{out}/histograms.json", histograms(d, cfg))
    _write_quarantine(d, f"{out}/quarantine/decide.jsonl")
    return summ


def _write_quarantine(d: Decisions, path: str) -> None:
    idx = np.flatnonzero(d.status == QUARANTINED)
    shard, row = d.table.column("_shard").to_numpy(), d.table.column("_row").to_numpy()
    ids = d.table.column("id").to_pylist()
    with atomic_open(path, "w", encoding="utf-8") as f:
        for i in idx:
            reason, _, detail = str(d.reason[i]).partition(":")
            q = Quarantined(f"signals/shard-{int(shard[i]):05d}.parquet", int(row[i]), None, reason, detail,
                            str(ids[i])[:200])  # fmt: skip
            f.write(json.dumps(q.row()) + "\n")


def write_kept(run: RunDir, d: Decisions, out: str) -> int:
    """Copy kept documents from the corpus shards into ``curated/shard-NNNNN.parquet``; returns docs written."""
    keep = set(np.asarray(d.table.column("id").to_pylist(), dtype=object)[d.status == KEPT].tolist())
    n = 0
    shards = sorted(glob.glob(run.path("corpus", "shard-*.parquet")))
    for i, shard in enumerate(shards):
        t = pq.read_table(shard).select(list(CORPUS_SCHEMA.names))
        mask = pa.array([x in keep for x in t.column("id").to_pylist()], pa.bool_())
        kept = t.filter(mask).cast(CORPUS_SCHEMA)
        with atomic_open(f"{out}/shard-{i:05d}.parquet", "wb") as f:
            pq.write_table(kept, f)
        n += len(kept)
    _drop_others(out, "shard-*.parquet", set(range(len(shards))))
    return n


def _drop_others(out: str, pattern: str, keep: set[int]) -> None:
    """Delete ``shard-NNNNN`` outputs whose NNNNN is not in ``keep``: left by an earlier run over other shards."""
    for p in glob.glob(f"{out}/{pattern}"):
        num = Path(p).name.split(".")[0].removeprefix("shard-")
        if num.isdigit() and int(num) not in keep:
            os.remove(p)


def run_decide(run_dir: str, cfg: DecideConfig, force: bool = False) -> dict[str, Any]:
    """The ``curate decide`` stage: decisions, stats and kept shards; skipped when its marker matches."""
    run = RunDir(run_dir)
    inputs = decide_inputs_hash(run, cfg)
    if not force and run.is_done("curated", inputs):
        return run.marker("curated")["summary"]
    table = load_signals(run_dir, cfg)
    check_columns(table, cfg, run.path("signals"))
    d = decide_table(table, cfg)
    out = run.stage("curated")
    summ = write_decisions(d, cfg, out, upstream(run))
    written = write_kept(run, d, out)
    short = {k: summ[k] for k in ("input", KEPT, DROPPED, QUARANTINED, "reconciles", "tokens_input", "tokens_kept")}
    short |= {"kept_written": written, "token_cost": summ["token_cost"]}
    if written != summ[KEPT]:
        log.warning("kept documents missing from corpus " + kv(kept=summ[KEPT], written=written))
    run.mark_done("curated", inputs, short)
    log.info("decide done " + kv(**{k: v for k, v in short.items() if k != "token_cost"}))
    return short


def decide_inputs_hash(run: RunDir, cfg: DecideConfig) -> str:
    """Hash of the config and of every signals/dedup/corpus shard's name and size."""
    files = [*signal_shards(run), *sorted(glob.glob(run.path("signals", "dedup", "shard-*.parquet")))]
    files += sorted(glob.glob(run.path("corpus", "shard-*.parquet")))
    return hash_obj({"config": cfg.model_dump(), "files": [(f, Path(f).stat().st_size) for f in files]})


# ---------------------------------------------------------------- what-if


def apply_sets(cfg: DecideConfig, sets: list[str]) -> DecideConfig:
    """A copy of ``cfg`` with ``rule=value`` changes (``none`` disables; ``allowed_langs=de,fr``; ``dedup=false``)."""
    data = cfg.model_dump()
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected rule=value, e.g. gopher_short_doc=20 or quality_low=none")
        key, value = key.strip(), value.strip()
        if key == "allowed_langs":
            data[key] = None if value.lower() == "none" else [x for x in value.split(",") if x]
        elif key == "dedup":
            data[key] = value.lower() in ("1", "true", "yes", "on")
        elif key in data["rules"]:
            data["rules"][key]["threshold"] = None if value.lower() in ("none", "null", "off") else float(value)
        else:
            raise ValueError(f"--set {item!r}: unknown rule {key!r}; rules are {sorted(data['rules'])}")
    return DecideConfig.model_validate(data)


def run_whatif(run_dir: str, cfg: DecideConfig, sets: list[str], name: str | None = None) -> dict[str, Any]:
    """Recompute decisions with changed thresholds from stored signals; writes ``curated/whatif/<name>/``."""
    new = apply_sets(cfg, sets)
    table = load_signals(run_dir, new)
    check_columns(table, new, RunDir(run_dir).path("signals"))
    d = decide_table(table, new)
    run = RunDir(run_dir)
    out = run.stage("curated", "whatif", name or hash_obj(sets))
    summ = write_decisions(d, new, out, upstream(run))
    summ["sets"] = sets
    summ["out"] = out
    summ["vs_baseline"] = _vs_baseline(run, d, summ)
    write_json(f"{out}/summary.json", summ)
    return summ


def _vs_baseline(run: RunDir, d: Decisions, summ: dict[str, Any]) -> dict[str, Any] | None:
    """Change against the last ``curate decide`` (curated/decisions.parquet): documents and tokens kept."""
    if not run.exists("curated", "decisions.parquet") or not run.exists("curated", "summary.json"):
        return None

    base = read_json(run.path("curated", "summary.json"))
    old = pq.read_table(run.path("curated", "decisions.parquet"), columns=["id", "status"])
    before = dict(zip(old.column("id").to_pylist(), old.column("status").to_pylist(), strict=True))
    ids = d.table.column("id").to_pylist()
    changed = sum(before.get(i) != s for i, s in zip(ids, d.status.tolist(), strict=True))
    return {
        "kept_delta": summ[KEPT] - base[KEPT], "tokens_kept_delta": summ["tokens_kept"] - base["tokens_kept"],
        "docs_changed": int(changed),
    }  # fmt: skip


def fmt_counts(s: dict[str, Any]) -> str:
    """One-line summary of a decide/what-if result."""
    share = s["tokens_kept"] / s["tokens_input"] if s.get("tokens_input") else math.nan
    return (
        f"{s['input']} docs: {s[KEPT]} kept, {s[DROPPED]} dropped, {s[QUARANTINED]} quarantined; "
        f"{share:.1%} of tokens kept"
    )


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``decide``: apply the decide section's rules to the stored signals."""
    return fmt_counts(run_decide(run_dir, load_section(config_path, "decide", DecideConfig)))
