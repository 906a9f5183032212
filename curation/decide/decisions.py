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

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from curation import run_files
from curation.ingest.readers import IdSet
from tokenwise.config import BaseConfig, load_section
from tokenwise.documents import CORPUS_SCHEMA, Quarantined
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, read_json, write_json

log = logging.getLogger(__name__)
KEPT, DROPPED, QUARANTINED = "kept", "dropped", "quarantined"


class Applies(BaseConfig):
    """Where a rule judges documents; outside it the rule passes them (its ``pass_<rule>`` is null)."""

    min_words: int | None = Field(
        None, ge=0, description="Documents with fewer words (``words_column``) are outside the rule: Gopher's "
        "repetition and quality rules were designed for documents of 50+ words, not UI strings")  # fmt: skip
    domains: list[str] | None = Field(None, description="Only documents of these domains (null: every domain).")
    words_column: str = Field("n_words", description="Word count column (language-aware ``n_words`` by default).")


class Rule(BaseConfig):
    """Drop a document when ``signal`` is ``drop_if`` (``lt``/``gt``) ``threshold``; a null threshold turns it off."""

    signal: str = Field(..., description="Signal column in signals/ (or dedup/) shards.")
    drop_if: Literal["lt", "gt"] = Field(..., description="lt: drop values below threshold; gt: drop values above.")
    threshold: float | None = Field(..., description="The threshold; null disables the rule.")
    by_lang: dict[str, float | None] = Field(
        default_factory=dict, description="Per-language thresholds (keys: values of decide.lang_column); null turns "
        "the rule off for that language; others use `threshold`")  # fmt: skip
    applies_if: Applies | None = Field(None, description="Where the rule applies (minimum words, domains).")

    def enabled(self) -> bool:
        return self.threshold is not None or any(v is not None for v in self.by_lang.values())


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
    fairness_ratio: float = Field(
        2.0, gt=1, le=100, description="The report flags a language whose drop share for a rule is above this many "
        "times the median language's share")  # fmt: skip
    fairness_min_share: float = Field(
        0.01, ge=0, le=1, description="A language is flagged only when its drop share is also at least this "
        "(0.4% vs a median of 0.1% is noise, not unfairness); higher = fewer, larger flags")  # fmt: skip

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
    passes: dict[str, np.ndarray]  # rule -> [N] float (1 pass, 0 fail, nan missing or not applicable)
    order: list[str]  # rules in application order (enabled only)


# ---------------------------------------------------------------- loading (one shard at a time)


def signal_shards(run: RunDir) -> list[str]:
    """Signals shards (not the dedup ones) in order."""
    return run_files.glob(run, "signals", "shard-*.parquet")


def dedup_shards(run: RunDir) -> list[str]:
    return run_files.glob(run, "signals", "dedup", "shard-*.parquet")


def load_shard(path: str, dedup: str | None, shard: int) -> pa.Table:
    """One signals shard with ``_shard`` and ``_row``, left-joined with its dedup shard's columns when given."""
    t = run_files.read_table(path)
    if "id" not in t.column_names:
        raise ValueError(f"{path}: signals shard has no `id` column (columns: {t.column_names})")
    t = t.append_column("_shard", pa.array(np.full(len(t), shard, np.int32)))
    t = normalise_names(t.append_column("_row", pa.array(np.arange(len(t), dtype=np.int64))))
    if dedup is None:
        return t
    dd = run_files.read_table(dedup)
    # each signals row takes the dedup row of the first occurrence of its id (a repeated corpus id must not multiply
    # signal rows); rows without one get nulls; the signals' row order is kept
    at = pc.index_in(pc.cast(t.column("id"), pa.string()), value_set=pc.cast(dd.column("id"), pa.string()))
    for c in dd.column_names:
        if c != "id" and c not in t.column_names:
            t = t.append_column(c, dd.column(c).take(at))
    return t


# the scorer's size columns may be named bytes/chars/words; decisions and plans use n_bytes/n_chars/n_words
SIGNAL_ALIASES = {"bytes": "n_bytes", "chars": "n_chars", "words": "n_words"}


def normalise_names(table: pa.Table) -> pa.Table:
    """Rename ``bytes/chars/words`` to ``n_bytes/n_chars/n_words`` when only the short names exist."""
    names = [
        SIGNAL_ALIASES.get(c, c) if SIGNAL_ALIASES.get(c) not in table.column_names else c for c in table.column_names
    ]
    return table.rename_columns(names)


def _dedup_for(run: RunDir, cfg: DecideConfig, signals: list[str]) -> list[str | None]:
    """The dedup shard of each signals shard: dedup writes ``shard-NNNNN`` for the NNNNN-th corpus shard, and each
    signals shard carries its corpus shard's name."""
    dd = dedup_shards(run)
    if not dd:
        if cfg.dedup:
            raise FileNotFoundError(
                f"{run.path('signals', 'dedup')}: no dedup shards; "
                "run `tokenwise curate dedup` or set decide.dedup: false"
            )
        return [None] * len(signals)
    corpus = [_name(p) for p in run_files.glob(run, "corpus", "shard-*.parquet")]
    by_index = {_name(p): p for p in dd}
    out = []
    for sig in signals:
        i = corpus.index(_name(sig)) if _name(sig) in corpus else signals.index(sig)
        out.append(by_index.get(f"shard-{i:05d}.parquet"))
    return out


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


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


def _needed(cfg: DecideConfig) -> list[str]:
    need = [r.signal for r in cfg.rules.values() if r.enabled()]
    return [*need, f"tokens_{cfg.reference_tokenizer}"]


def check_columns(columns: set[str], nulls: dict[str, tuple[int, int]], cfg: DecideConfig, where: str) -> None:
    """Fail fast when an enabled rule's signal is absent from every shard (a config or scorer mismatch) or null in
    every document; ``nulls``: column -> (null count, rows) over the shards that have it."""
    need = _needed(cfg)
    missing = [c for c in need if c not in columns]
    if missing:
        have = sorted(c for c in columns if not c.startswith("_"))
        raise ValueError(f"{where}: signal column(s) {missing} not found; available: {have}. Fix the decide config.")
    empty = [c for c in need if c in nulls and nulls[c][1] and nulls[c][0] == nulls[c][1]]
    if empty:
        raise ValueError(
            f"{where}: signal column(s) {empty} are null for every document (e.g. quality_score without a trained "
            "quality model); run the stage that fills them or set those rules' threshold to null"
        )


def _thresholds(rule: Rule, langs: np.ndarray) -> np.ndarray:
    """Each row's threshold (NaN: the rule is off for the row's language)."""
    base = np.nan if rule.threshold is None else float(rule.threshold)
    th = np.full(len(langs), base, dtype=np.float64)
    for lang, value in rule.by_lang.items():
        th[langs == lang] = np.nan if value is None else float(value)
    return th


def _applies(table: pa.Table, rule: Rule) -> np.ndarray:
    """Rows the rule judges (its applicability condition)."""
    ok = np.ones(len(table), dtype=bool)
    cond = rule.applies_if
    if cond is None:
        return ok
    if cond.min_words is not None:
        ok &= ~(_values(table, cond.words_column) < cond.min_words)  # unknown word counts: the rule applies
    if cond.domains is not None:
        ok &= np.isin(_strings(table, "domain", fill=""), cond.domains)
    return ok


def rule_order(cfg: DecideConfig, with_dedup: bool) -> list[str]:
    """Enabled rules in application order (the same for every shard)."""
    order = ["lang_not_allowed"] if cfg.allowed_langs is not None else []
    order += [name for name, r in cfg.rules.items() if r.enabled()]
    return order + (["dup_not_representative"] if cfg.dedup and with_dedup else [])


def decide_table(table: pa.Table, cfg: DecideConfig, order: list[str] | None = None,
                 seen_ids: IdSet | None = None) -> Decisions:  # fmt: skip
    """Apply the rules to a signals table (one shard); pure and vectorised (what-if and decide both call this).

    ``seen_ids`` carries the ids of earlier shards, so a repeated id is quarantined across shards too.
    """
    n = len(table)
    order = order if order is not None else rule_order(cfg, "dup_is_representative" in table.column_names)
    status = np.full(n, KEPT, dtype=object)
    reason = np.full(n, "", dtype=object)
    langs = _strings(table, cfg.lang_column)
    passes: dict[str, np.ndarray] = {}
    judged: dict[str, np.ndarray] = {}
    for name in order:
        if name == "lang_not_allowed":
            passes[name] = np.isin(langs, cfg.allowed_langs).astype(np.float64)
        elif name == "dup_not_representative":
            passes[name] = _values(table, "dup_is_representative")
            judged[name] = np.ones(n, dtype=bool)
        else:
            rule = cfg.rules[name]
            v, th = _values(table, rule.signal), _thresholds(rule, langs)
            judged[name] = _applies(table, rule) & ~np.isnan(th)
            with np.errstate(invalid="ignore"):
                ok = v >= th if rule.drop_if == "lt" else v <= th
            passes[name] = np.where(judged[name] & ~np.isnan(v), ok.astype(np.float64), np.nan)
    _quarantine(table, cfg, status, reason, judged, seen_ids)
    for name in order:
        fail = (status == KEPT) & (passes[name] == 0)
        status[fail], reason[fail] = DROPPED, name
    return Decisions(table, status, reason, passes, order)


def _quarantine(table: pa.Table, cfg: DecideConfig, status: np.ndarray, reason: np.ndarray,
                judged: dict[str, np.ndarray], seen_ids: IdSet | None) -> None:  # fmt: skip
    """Mark rows that cannot be decided: a signal missing/NaN where its rule applies, or an id seen before."""
    checks = [(r.signal, judged[name]) for name, r in cfg.rules.items() if name in judged]
    checks.append((f"tokens_{cfg.reference_tokenizer}", np.ones(len(table), dtype=bool)))
    if "dup_not_representative" in judged:
        checks.append(("dup_is_representative", judged["dup_not_representative"]))
    for col, where in checks:
        bad = np.isnan(_values(table, col)) & where & (status == KEPT)
        status[bad], reason[bad] = QUARANTINED, f"signal_missing:{col}"
    ids = table.column("id").to_pylist()
    seen = seen_ids if seen_ids is not None else IdSet()
    present = [i for i, x in enumerate(ids) if x]
    dup = seen.add([ids[i] for i in present]) if present else np.zeros(0, dtype=bool)
    for i, is_dup in zip(present, dup.tolist(), strict=True):
        if is_dup and status[i] == KEPT:
            status[i], reason[i] = QUARANTINED, "duplicate_id"
    for i, x in enumerate(ids):
        if not x and status[i] == KEPT:
            status[i], reason[i] = QUARANTINED, "missing_id"


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


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


class StepSums:
    """Documents, characters and tokens reaching and dropped at each step, overall, per language and per domain,
    plus what the fairness check needs per rule and language; summed shard by shard (``add``), so decide holds one
    shard at a time."""

    GROUPS = (("all", None), ("lang", "lang"), ("domain", "domain"))

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.measures: list[str] = []
        self.sums: dict[tuple[str, str, str], dict[str, float]] = {}
        self.why: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, d: Decisions, cfg: DecideConfig, judged: dict[str, np.ndarray]) -> None:
        meas = _measures(d)
        self.measures += [m for m in meas if m not in self.measures]
        n = len(d.status)
        langs = _strings(d.table, "lang").astype(str)
        for step, reach, drop in step_masks(d):
            if step not in self.steps:
                self.steps.append(step)
            for by, col in self.GROUPS:
                labels, inv = np.unique(_strings(d.table, col).astype(str), return_inverse=True) if col else (
                    np.array(["all"]), np.zeros(n, np.int64))  # fmt: skip
                k = len(labels)
                for m, v in meas.items():
                    s_in, s_drop = np.bincount(inv, v * reach, k), np.bincount(inv, v * drop, k)
                    for gi, g in enumerate(labels.tolist()):
                        acc = self.sums.setdefault((step, by, g), {})
                        acc[f"{m}_in"] = acc.get(f"{m}_in", 0.0) + s_in[gi]
                        acc[f"{m}_dropped"] = acc.get(f"{m}_dropped", 0.0) + s_drop[gi]
            if step != "signals":
                self._add_why(d, cfg, step, reach, drop, langs, judged.get(step))

    def _add_why(self, d: Decisions, cfg: DecideConfig, step: str, reach: np.ndarray, drop: np.ndarray,
                 langs: np.ndarray, judged: np.ndarray | None) -> None:  # fmt: skip
        """Per language: documents the rule judged (its applicability), the mean of its signal there, and for
        duplicates the share of exact copies among drops: the numbers that say why a language's share differs."""
        rule = cfg.rules.get(step)
        signal = _values(d.table, rule.signal) if rule else None
        exact = _values(d.table, "dup_exact") if step == "dup_not_representative" else None
        for lang in np.unique(langs[reach]).tolist():
            m = reach & (langs == lang)
            acc = self.why.setdefault((step, lang), {})
            acc["reach"] = acc.get("reach", 0) + int(m.sum())
            acc["judged"] = acc.get("judged", 0) + int((m & judged).sum() if judged is not None else m.sum())
            if signal is not None:
                vals = signal[m & (judged if judged is not None else True) & np.isfinite(signal)]
                acc["signal_sum"] = acc.get("signal_sum", 0.0) + float(vals.sum())
                acc["signal_n"] = acc.get("signal_n", 0) + len(vals)
            if exact is not None:
                acc["dropped_exact"] = acc.get("dropped_exact", 0) + int(np.nansum(exact[m & drop]))

    def rows(self) -> list[dict[str, Any]]:
        """Rows ``{step, group_by, group, <m>_in, <m>_kept, <m>_dropped, docs_dropped_share}`` in step order."""
        out = []
        for step in self.steps:
            for by, _ in self.GROUPS:
                for g in sorted(grp for (st, b, grp) in self.sums if st == step and b == by):
                    acc = self.sums[(step, by, g)]
                    row: dict[str, Any] = {"step": step, "group_by": by, "group": g}
                    for m in self.measures:
                        s_in, s_drop = acc.get(f"{m}_in", 0.0), acc.get(f"{m}_dropped", 0.0)
                        row |= {f"{m}_in": _num(s_in), f"{m}_dropped": _num(s_drop), f"{m}_kept": _num(s_in - s_drop)}
                    row["docs_dropped_share"] = row["docs_dropped"] / row["docs_in"] if row["docs_in"] else 0.0
                    out.append(row)
        return out


def fairness(rows: list[dict[str, Any]], why: dict[tuple[str, str], dict[str, float]], ratio: float,
             min_docs: int = 30, min_share: float = 0.0) -> list[dict[str, Any]]:  # fmt: skip
    """Per rule: each language's drop share, the median language's share and English's; a language is flagged when
    its share is above ``ratio`` x the median (``above_english``: above ``ratio`` x English's). ``why`` beside each
    flag: the share of its documents the rule judged at all, its mean signal value against all languages' mean, and
    for duplicates the share of exact copies among its drops. Shares under ``min_share`` are never flagged.
    Languages with fewer than ``min_docs`` documents
    reaching the rule are listed without a flag."""
    out = []
    for step in dict.fromkeys(r["step"] for r in rows if r["step"] != "signals"):
        langs = {r["group"]: r for r in rows if r["step"] == step and r["group_by"] == "lang" and r["docs_in"]}
        big = {g: r["docs_dropped_share"] for g, r in langs.items() if r["docs_in"] >= min_docs and g != "und"}
        if not big:
            continue
        median = float(np.median(list(big.values())))
        english = big.get("en")
        all_sig = [why.get((step, g), {}) for g in langs]
        sig_n = sum(a.get("signal_n", 0) for a in all_sig)
        mean_all = sum(a.get("signal_sum", 0.0) for a in all_sig) / sig_n if sig_n else None
        for g, r in sorted(langs.items()):
            share = r["docs_dropped_share"]
            w = why.get((step, g), {})
            entry = {"rule": step, "lang": g, "docs_in": r["docs_in"], "docs_dropped": r["docs_dropped"],
                     "share": share, "median_share": median, "english_share": english,
                     "flagged": g in big and share > ratio * median and share > 0 and share >= min_share,
                     "above_english": g in big and english is not None and share > ratio * english and share > 0
                     and share >= min_share,
                     "judged_share": w.get("judged", 0) / w["reach"] if w.get("reach") else None,
                     "mean_signal": w["signal_sum"] / w["signal_n"] if w.get("signal_n") else None,
                     "mean_signal_all": mean_all,
                     "exact_share_of_drops": (w["dropped_exact"] / r["docs_dropped"]
                                              if "dropped_exact" in w and r["docs_dropped"] else None)}  # fmt: skip
            out.append(entry)
    return out


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


def pipeline_stats(d: Decisions, reference: str):
    """datatrove PipelineStats of one shard's decisions (shards add up with ``+``, as datatrove's merge_stats)."""
    from datatrove.utils.stats import PipelineStats, Stats  # heavy: deferred until used

    meas, langs, domains = _measures(d), _strings(d.table, "lang"), _strings(d.table, "domain")
    blocks = []
    for step, reach, drop in step_masks(d):
        st = Stats(step)
        kept = reach & ~drop
        for key, mask in (("total", reach), ("forwarded", kept), ("dropped", drop)):
            _add_counts(st, key, mask, meas, f"tokens_{reference}", langs, domains)
        if step == "signals":
            for r in sorted(set(d.reason[drop])):
                st[f"dropped_{r}"] = _metric(np.ones(int((drop & (d.reason == r)).sum())))
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


# ---------------------------------------------------------------- histograms (two passes, fixed edges)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


class Histograms:
    """Every numeric signal's histogram over the decided (not quarantined) documents, shard by shard: a first pass
    finds each column's range (``span``), a second counts with the fixed edges ``np.histogram`` would use on all
    values at once (``count``), so the result equals the one-table histogram."""

    def __init__(self, cfg: DecideConfig):
        self.cfg = cfg
        self.range: dict[str, list[float]] = {}
        self.edges: dict[str, np.ndarray] = {}
        self.acc: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _columns(table: pa.Table) -> list[str]:
        return [c for c in table.column_names if not c.startswith("_") and _numeric(table.schema.field(c).type)]

    def span(self, table: pa.Table, ok: np.ndarray) -> None:
        for col in self._columns(table):
            v = _values(table, col)
            fin = ok & np.isfinite(v)
            if fin.any():
                lo, hi = self.range.setdefault(col, [np.inf, -np.inf])
                self.range[col] = [min(lo, float(v[fin].min())), max(hi, float(v[fin].max()))]

    def count(self, table: pa.Table, ok: np.ndarray) -> None:
        tok = np.nan_to_num(_values(table, f"tokens_{self.cfg.reference_tokenizer}"))
        by_signal = {r.signal: (name, r) for name, r in self.cfg.rules.items()}
        for col in self._columns(table):
            if col not in self.range:
                continue
            if col not in self.edges:
                self.edges[col] = np.histogram_bin_edges([], bins=self.cfg.hist_bins, range=tuple(self.range[col]))
            v = _values(table, col)
            fin = ok & np.isfinite(v)
            a = self.acc.setdefault(col, {"hist": np.zeros(self.cfg.hist_bins, np.int64), "n": 0, "tok": 0.0})
            a["hist"] += np.histogram(v[fin], bins=self.edges[col])[0]
            a["n"] += int(fin.sum())
            a["tok"] += float(tok[fin].sum())
            if col in by_signal and by_signal[col][1].threshold is not None:
                th = by_signal[col][1].threshold
                below, above = fin & (v < th), fin & (v > th)
                for k, mask in (("below", below), ("above", above)):
                    a[f"docs_{k}"] = a.get(f"docs_{k}", 0) + int(mask.sum())
                    a[f"tok_{k}"] = a.get(f"tok_{k}", 0.0) + float(tok[mask].sum())

    def result(self) -> dict[str, Any]:
        """``{signal: {hist, bin_edges, n, [rule, threshold, drop_if, docs_below/above, tokens_below/above]}}``."""
        by_signal = {r.signal: (name, r) for name, r in self.cfg.rules.items()}
        out = {}
        for col, a in self.acc.items():
            if not a["n"]:
                continue
            entry: dict[str, Any] = {"hist": a["hist"].tolist(), "bin_edges": self.edges[col].tolist(), "n": a["n"]}
            if "docs_below" in a:
                name, rule = by_signal[col]
                tsum = a["tok"] or 1.0
                entry |= {
                    "rule": name, "threshold": rule.threshold, "drop_if": rule.drop_if,
                    "docs_below": a["docs_below"] / a["n"], "docs_above": a["docs_above"] / a["n"],
                    "tokens_below": a["tok_below"] / tsum, "tokens_above": a["tok_above"] / tsum,
                }  # fmt: skip
            out[col] = entry
        return out


# ---------------------------------------------------------------- summary + writers


def decisions_table(d: Decisions) -> pa.Table:
    """The decisions.parquet rows of one shard."""
    cols: dict[str, Any] = {
        "id": pc.cast(d.table.column("id"), pa.string()),
        "lang": pa.array(_strings(d.table, "lang").tolist(), pa.string()),
        "domain": pa.array(_strings(d.table, "domain").tolist(), pa.string()),
        "status": pa.array(d.status.tolist(), pa.string()),
        "keep": pa.array(d.status == KEPT, pa.bool_()),
        "reason": pa.array(d.reason.tolist(), pa.string()),
    }
    for name in d.order:
        p = d.passes[name]
        cols[f"pass_{name}"] = pa.array(np.where(np.isnan(p), False, p == 1), pa.bool_(), mask=np.isnan(p))
    return pa.table(cols)


def upstream(run: RunDir) -> dict[str, Any] | None:
    """Rows the scorer quarantined before they reached signals/ (from ``signals/manifest.json``), so that
    corpus rows = scored + score-quarantined = kept + dropped + quarantined + score-quarantined."""
    if not run.exists("signals", "manifest.json"):
        return None
    t = read_json(run.path("signals", "manifest.json")).get("totals", {})
    return {"corpus_rows": t.get("rows_in"), "score_quarantined": t.get("rows_quarantined")}


class _Totals:
    """Counts, token cost per rule and reasons, summed over shards."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys((KEPT, DROPPED, QUARANTINED), 0)
        self.tokens_input = self.tokens_kept = 0.0
        self.cost: dict[str, float] = {}
        self.reasons: dict[str, int] = {}

    def add(self, d: Decisions, cfg: DecideConfig) -> None:
        tok = np.nan_to_num(_values(d.table, f"tokens_{cfg.reference_tokenizer}"))
        for k in self.counts:
            self.counts[k] += int((d.status == k).sum())
        self.tokens_input += float(tok.sum())
        self.tokens_kept += float(tok[d.status == KEPT].sum())
        for name in d.order:
            self.cost[name] = self.cost.get(name, 0.0) + float(tok[d.reason == name].sum())
        for r, c in zip(*np.unique(d.reason[d.reason != ""].astype(str), return_counts=True), strict=True):
            self.reasons[r] = self.reasons.get(r, 0) + int(c)


def _summary(tot: _Totals, steps: StepSums, cfg: DecideConfig, order: list[str]) -> dict[str, Any]:
    n = sum(tot.counts.values())
    rows = steps.rows()
    rules = []
    for k in order:
        r = cfg.rules.get(k)
        rules.append({"name": k, "signal": r.signal if r else None, "threshold": r.threshold if r else None,
                      "drop_if": r.drop_if if r else None, "by_lang": r.by_lang if r else {},
                      "applies_if": r.applies_if.model_dump() if r and r.applies_if else None})  # fmt: skip
    return {
        "input": n, **tot.counts, "reconciles": n == sum(tot.counts.values()),
        "reference_tokenizer": cfg.reference_tokenizer, "tokens_input": _num(tot.tokens_input),
        "tokens_kept": _num(tot.tokens_kept), "token_cost": {k: _num(tot.cost.get(k, 0.0)) for k in order},
        "by_reason": dict(sorted(tot.reasons.items())), "rules": rules, "steps": rows,
        "fairness": fairness(rows, steps.why, cfg.fairness_ratio, min_share=cfg.fairness_min_share),
        "config": cfg.model_dump(),
    }  # fmt: skip


def _quarantine_lines(d: Decisions, shard_name: str) -> list[str]:
    idx = np.flatnonzero(d.status == QUARANTINED)
    rows = d.table.column("_row").to_numpy()
    ids = d.table.column("id").to_pylist()
    out = []
    for i in idx.tolist():
        reason, _, detail = str(d.reason[i]).partition(":")
        q = Quarantined(f"signals/{shard_name}", int(rows[i]), None, reason, detail, str(ids[i])[:200])
        out.append(json.dumps(q.row()) + "\n")
    return out


def _scan_columns(files: list[str]) -> tuple[set[str], dict[str, tuple[int, int]]]:
    """Column names over the shards and (null count, rows) per column, from Parquet metadata where it has them."""
    names: set[str] = set()
    nulls: dict[str, tuple[int, int]] = {}
    for f in files:
        with run_files.parquet_file(f) as pf:
            schema, md = pf.schema_arrow, pf.metadata
            names |= set(normalise_names(schema.empty_table()).column_names)
            for j, col in enumerate(schema.names):
                col_n = SIGNAL_ALIASES.get(col, col) if SIGNAL_ALIASES.get(col) not in schema.names else col
                stats = [md.row_group(g).column(j).statistics for g in range(md.num_row_groups)]
                if all(st is not None and st.has_null_count for st in stats):
                    nc = sum(st.null_count for st in stats)
                else:
                    nc = pf.read(columns=[col]).column(0).null_count
                a, b = nulls.get(col_n, (0, 0))
                nulls[col_n] = (a + nc, b + md.num_rows)
    return names, nulls


def _decide_all(run: RunDir, cfg: DecideConfig, out: str, write_kept: bool) -> tuple[dict[str, Any], int]:
    """Decisions of every signals shard, one shard in memory at a time; writes decisions.parquet, stats, histograms,
    quarantine and (``write_kept``) the kept documents; returns (summary, kept documents written)."""
    files = signal_shards(run)
    if not files:
        raise FileNotFoundError(f"{run.path('signals')}: no signals shards; run `tokenwise curate score` first")
    dedup = _dedup_for(run, cfg, files)
    columns, nulls = _scan_columns(files + [f for f in dedup if f])
    check_columns(columns, nulls, cfg, run.path("signals"))
    order = rule_order(cfg, any(dedup))
    corpus = run_files.glob(run, "corpus", "shard-*.parquet")
    corpus_index = {_name(p): i for i, p in enumerate(corpus)}
    from datatrove.utils.stats import PipelineStats  # heavy: deferred until used

    total, tot, steps, hist, seen = PipelineStats(), _Totals(), StepSums(), Histograms(cfg), IdSet()
    ok_masks, written, kept_shards = [], 0, set()
    with contextlib.ExitStack() as stack:
        dec_file = stack.enter_context(atomic_open(f"{out}/decisions.parquet", "wb"))
        q_file = stack.enter_context(atomic_open(f"{out}/quarantine/decide.jsonl", "w", encoding="utf-8"))
        writer = None
        for i, (path, dd) in enumerate(zip(files, dedup, strict=True)):
            table = load_shard(path, dd, i)
            d = decide_table(table, cfg, order, seen)
            judged = {name: ~np.isnan(p) for name, p in d.passes.items()}
            dec = decisions_table(d)
            writer = writer or stack.enter_context(pq.ParquetWriter(dec_file, dec.schema))
            writer.write_table(dec)
            q_file.writelines(_quarantine_lines(d, _name(path)))
            part = json.loads(pipeline_stats(d, cfg.reference_tokenizer).to_json())
            write_json(f"{out}/stats/shard-{i:05d}.json", part)
            total = total + PipelineStats.from_json(part)  # exactly what datatrove's merge_stats computes
            tot.add(d, cfg)
            steps.add(d, cfg, judged)
            ok = d.status != QUARANTINED
            hist.span(table, ok)
            ok_masks.append(np.packbits(ok))
            if write_kept and _name(path) in corpus_index:
                k = corpus_index[_name(path)]
                written += _write_kept_shard(corpus[k], d, f"{out}/shard-{k:05d}.parquet")
                kept_shards.add(k)
        if writer is None:  # no rows at all
            pq.write_table(decisions_table(decide_table(pa.table({"id": pa.array([], pa.string())}), cfg, order)),
                           dec_file)  # fmt: skip
    for i, (path, dd) in enumerate(zip(files, dedup, strict=True)):  # second pass: histogram counts
        table = load_shard(path, dd, i)
        hist.count(table, np.unpackbits(ok_masks[i], count=len(table)).astype(bool))
    if write_kept:
        for k in set(range(len(corpus))) - kept_shards:  # corpus shards without signals keep nothing
            written += _write_kept_shard(corpus[k], None, f"{out}/shard-{k:05d}.parquet")
        _drop_others(run, out, "shard-*.parquet", set(range(len(corpus))))
    _drop_others(run, f"{out}/stats", "shard-*.json", set(range(len(files))))  # parts an earlier run had
    write_json(f"{out}/stats.json", json.loads(total.to_json()))
    write_json(f"{out}/histograms.json", hist.result())
    return _summary(tot, steps, cfg, order), written


def _write_kept_shard(corpus_shard: str, d: Decisions | None, out: str) -> int:
    """The kept documents of one corpus shard (CORPUS_SCHEMA); ``d`` None keeps none."""
    t = run_files.read_table(corpus_shard).select(list(CORPUS_SCHEMA.names))
    keep = set() if d is None else set(np.asarray(d.table.column("id").to_pylist(), dtype=object)[d.status == KEPT])
    kept = t.filter(pa.array([x in keep for x in t.column("id").to_pylist()], pa.bool_())).cast(CORPUS_SCHEMA)
    with atomic_open(out, "wb") as f:
        pq.write_table(kept, f)
    return len(kept)


def _drop_others(run: RunDir, out: str, pattern: str, keep: set[int]) -> None:
    """Delete ``shard-NNNNN`` outputs whose NNNNN is not in ``keep``: left by an earlier run over other shards."""
    rel = out.removeprefix(run.root).strip("/")
    for p in run_files.glob(run, *rel.split("/"), pattern):
        num = _name(p).split(".")[0].removeprefix("shard-")
        if num.isdigit() and int(num) not in keep:
            run_files.remove(p)


def _with_upstream(summ: dict[str, Any], up: dict | None) -> dict[str, Any]:
    if up and up.get("corpus_rows") is not None:
        summ["upstream"] = up | {"reconciles": up["corpus_rows"] == summ["input"] + (up["score_quarantined"] or 0)}
    return summ


def run_decide(run_dir: str, cfg: DecideConfig, force: bool = False) -> dict[str, Any]:
    """The ``curate decide`` stage: decisions, stats and kept shards; skipped when its marker matches."""
    run = RunDir(run_dir)
    inputs = decide_inputs_hash(run, cfg)
    if not force and run.is_done("curated", inputs):
        return run.marker("curated")["summary"]
    out = run.stage("curated")
    summ, written = _decide_all(run, cfg, out, write_kept=True)
    summ = _with_upstream(summ, upstream(run))
    write_json(f"{out}/summary.json", summ)
    short = {k: summ[k] for k in ("input", KEPT, DROPPED, QUARANTINED, "reconciles", "tokens_input", "tokens_kept")}
    short |= {"kept_written": written, "token_cost": summ["token_cost"]}
    if written != summ[KEPT]:
        log.warning("kept documents missing from corpus " + kv(kept=summ[KEPT], written=written))
    run.mark_done("curated", inputs, short)
    log.info("decide done " + kv(**{k: v for k, v in short.items() if k != "token_cost"}))
    return short


def decide_inputs_hash(run: RunDir, cfg: DecideConfig) -> str:
    """Hash of the config and of every signals/dedup/corpus shard's name and size."""
    files = [*signal_shards(run), *dedup_shards(run), *run_files.glob(run, "corpus", "shard-*.parquet")]
    return hash_obj({"config": cfg.model_dump(), "files": [(f, run_files.size(f)) for f in files]})


# ---------------------------------------------------------------- what-if


def apply_sets(cfg: DecideConfig, sets: list[str]) -> DecideConfig:
    """A copy of ``cfg`` with ``rule=value`` changes (``none`` disables; ``allowed_langs=de,fr``; ``dedup=false``;
    ``rule@lang=value`` sets one language's threshold)."""
    data = cfg.model_dump()
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected rule=value, e.g. gopher_short_doc=20 or quality_low=none")
        key, value = key.strip(), value.strip()
        rule, _, lang = key.partition("@")
        number = None if value.lower() in ("none", "null", "off") else value
        if key == "allowed_langs":
            data[key] = None if value.lower() == "none" else [x for x in value.split(",") if x]
        elif key == "dedup":
            data[key] = value.lower() in ("1", "true", "yes", "on")
        elif rule in data["rules"]:
            target = data["rules"][rule]
            try:
                parsed = None if number is None else float(number)
            except ValueError:
                raise ValueError(f"--set {item!r}: {value!r} is not a number or none") from None
            if lang:
                target["by_lang"][lang] = parsed
            else:
                target["threshold"] = parsed
        else:
            raise ValueError(f"--set {item!r}: unknown rule {rule!r}; rules are {sorted(data['rules'])}")
    return DecideConfig.model_validate(data)


def run_whatif(run_dir: str, cfg: DecideConfig, sets: list[str], name: str | None = None) -> dict[str, Any]:
    """Recompute decisions with changed thresholds from stored signals; writes ``curated/whatif/<name>/``."""
    new = apply_sets(cfg, sets)
    run = RunDir(run_dir)
    out = run.stage("curated", "whatif", name or hash_obj(sets))
    summ, _ = _decide_all(run, new, out, write_kept=False)
    summ = _with_upstream(summ, upstream(run))
    summ["sets"] = sets
    summ["out"] = out
    summ["vs_baseline"] = _vs_baseline(run, out, summ)
    write_json(f"{out}/summary.json", summ)
    return summ


def _vs_baseline(run: RunDir, out: str, summ: dict[str, Any]) -> dict[str, Any] | None:
    """Change against the last ``curate decide`` (curated/decisions.parquet): documents and tokens kept. The two
    decision files are read side by side in batches (same signals: same row order); only when their ids do not line
    up are the old statuses held by id."""
    if not run.exists("curated", "decisions.parquet") or not run.exists("curated", "summary.json"):
        return None
    base = read_json(run.path("curated", "summary.json"))
    old_path, new_path = run.path("curated", "decisions.parquet"), f"{out}/decisions.parquet"
    changed, aligned = 0, True
    with run_files.parquet_file(old_path) as old, run_files.parquet_file(new_path) as new:
        if old.metadata.num_rows != new.metadata.num_rows:
            aligned = False
        else:
            pairs = zip(_rechunk(old.iter_batches(columns=["id", "status"])),
                        _rechunk(new.iter_batches(columns=["id", "status"])), strict=True)  # fmt: skip
            for a, b in pairs:
                if not a.column(0).equals(b.column(0)):
                    aligned = False
                    break
                changed += int(pc.sum(pc.not_equal(a.column(1), b.column(1))).as_py() or 0)
    if not aligned:
        before = dict(zip(*(run_files.read_table(old_path, ["id", "status"]).column(c).to_pylist()
                            for c in ("id", "status")), strict=True))  # fmt: skip
        t = run_files.read_table(new_path, ["id", "status"])
        changed = sum(before.get(i) != s for i, s in zip(*(t.column(c).to_pylist() for c in ("id", "status")),
                                                           strict=True))  # fmt: skip
    return {
        "kept_delta": summ[KEPT] - base[KEPT], "tokens_kept_delta": summ["tokens_kept"] - base["tokens_kept"],
        "docs_changed": int(changed),
    }  # fmt: skip


def _rechunk(batches, size: int = 1 << 16):
    """Record batches regrouped into tables of exactly ``size`` rows (the last one shorter)."""
    buf, n = [], 0
    for b in batches:
        buf.append(b)
        n += len(b)
        while n >= size:
            t = pa.Table.from_batches(buf)
            yield t.slice(0, size).combine_chunks()
            rest = t.slice(size)
            buf, n = rest.to_batches(), len(rest)
    if n:
        yield pa.Table.from_batches(buf).combine_chunks()


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
