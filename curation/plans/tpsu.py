"""Tokens per semantic unit (TPSU), the premium against English, and monolingual estimates from bytes.

Definitions (per tokenizer *t*; a **unit** is a ``unit_id`` shared by documents that say the same thing in different
languages):

- ``TPSU(l, t, u)`` = tokens tokenizer *t* spends on unit *u* in language *l* (the sum over the unit's documents in
  *l*; usually one).
- **premium** ``P(l, t)`` = Σ_u TPSU(l, t, u) / Σ_u TPSU(en, t, u) over the units present in both *l* and English
  (a ratio of sums, so long units weigh more, as they do in a token bill). Reported beside it: the median of the
  per-unit ratios and a bootstrap 95% CI of the ratio of sums (units resampled with replacement, seeded).
- **bytes per unit** ``BPU(l)`` = Σ_u bytes(l, u) / #units, measured on the parallel units (the calibration).
- **monolingual estimate**: a document without ``unit_id`` in language *l* holds ≈ bytes / BPU(l) semantic units;
  its TPSU is estimated as tokens / that. It is an *estimate*: the reported low/high bounds come from the bootstrap
  CI of BPU(l), and ``bpu_cv`` is the per-unit spread of bytes-per-unit relative to English content.

Rows are reported per language × domain × tokenizer (domain ``all`` pools domains) into ``<run>/curated/tpsu.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from curation.decide.decisions import normalise_names

REFERENCE_LANG = "en"


def token_columns(table: pa.Table) -> list[str]:
    """Tokenizer names with a ``tokens_<name>`` column."""
    return [c.removeprefix("tokens_") for c in table.column_names if c.startswith("tokens_")]


def unit_frame(table: pa.Table, tokenizers: list[str]) -> dict[str, Any]:
    """Sum tokens and bytes per (unit, lang, domain) over documents that have a unit_id."""
    cols = ["unit_id", "lang", "domain", "n_bytes", *[f"tokens_{t}" for t in tokenizers]]
    df = pl.from_arrow(table.select([c for c in cols if c in table.column_names]))
    if "domain" not in df.columns:
        df = df.with_columns(pl.lit("all").alias("domain"))
    df = df.filter(pl.col("unit_id").is_not_null() & pl.col("lang").is_not_null())
    sums = [pl.col(c).sum() for c in cols[3:] if c in df.columns]
    return df.group_by(["unit_id", "lang", "domain"]).agg(sums)


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of Σnum/Σden, resampling paired units."""
    n = len(num)
    if n < 2:
        r = float(num.sum() / den.sum()) if den.sum() else float("nan")
        return r, r
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    ratios = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def premium_rows(units, tokenizers: list[str], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (lang, domain incl. ``all``, tokenizer) with TPSU and premium vs English on shared units."""
    rows = []
    pooled = (
        units.group_by(["unit_id", "lang"])
        .agg(pl.all().exclude("domain").sum())
        .with_columns(pl.lit("all").alias("domain"))
    )
    for frame in (pooled, units):
        en = frame.filter(pl.col("lang") == REFERENCE_LANG)
        for (lang, domain), g in sorted(frame.group_by(["lang", "domain"]), key=lambda kv: kv[0]):
            both = g.join(
                en.select(["unit_id", "domain", *_cols(en, tokenizers)]), on=["unit_id", "domain"], suffix="_en"
            )
            for tok in tokenizers:
                rows.append(_premium_row(lang, domain, tok, both, n_boot, seed))
    return rows


def _cols(frame, tokenizers: list[str]) -> list[str]:
    return [c for c in ("n_bytes", *[f"tokens_{t}" for t in tokenizers]) if c in frame.columns]


def _premium_row(lang: str, domain: str, tok: str, both, n_boot: int, seed: int) -> dict[str, Any]:
    col = f"tokens_{tok}"
    num = both[col].to_numpy().astype(float)
    den = both[f"{col}_en"].to_numpy().astype(float)
    ok = den > 0
    num, den = num[ok], den[ok]
    premium = float(num.sum() / den.sum()) if den.sum() else None
    lo, hi = bootstrap_ratio(num, den, n_boot, seed) if len(num) else (None, None)
    return {
        "lang": lang, "domain": domain, "tokenizer": tok, "n_units": int(len(num)),
        "tokens": int(num.sum()), "tokens_en": int(den.sum()),
        "tpsu": float(num.mean()) if len(num) else None, "tpsu_en": float(den.mean()) if len(den) else None,
        "premium": premium, "premium_median_unit": float(np.median(num / den)) if len(num) else None,
        "premium_ci_low": lo, "premium_ci_high": hi,
    }  # fmt: skip


def calibration(units, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Bytes per unit per language on the parallel data, with bootstrap CI and the per-unit spread vs English."""
    pooled = units.group_by(["unit_id", "lang"]).agg(pl.col("n_bytes").sum())
    en = pooled.filter(pl.col("lang") == REFERENCE_LANG).select(["unit_id", pl.col("n_bytes").alias("en_bytes")])
    out = {}
    for (lang,), g in sorted(pooled.group_by(["lang"]), key=lambda kv: kv[0]):
        b = g["n_bytes"].to_numpy().astype(float)
        lo, hi = bootstrap_ratio(b, np.ones_like(b), n_boot, seed)
        joined = g.join(en, on="unit_id")
        ratio = joined["n_bytes"].to_numpy() / np.maximum(joined["en_bytes"].to_numpy(), 1)
        out[lang] = {
            "n_units": int(len(b)), "bytes_per_unit": float(b.mean()), "bpu_ci_low": lo, "bpu_ci_high": hi,
            "byte_premium": float(joined["n_bytes"].sum() / max(1, joined["en_bytes"].sum())) if len(joined) else None,
            "bpu_cv": float(ratio.std() / ratio.mean()) if len(ratio) > 1 and ratio.mean() else None,
        }  # fmt: skip
    return out


def monolingual_rows(table: pa.Table, calib: dict, tokenizers: list[str]) -> list[dict[str, Any]]:
    """Estimated units and TPSU for documents without unit_id, per (lang, domain incl. ``all``, tokenizer)."""
    cols = ["unit_id", "lang", "domain", "n_bytes", *[f"tokens_{t}" for t in tokenizers]]
    df = pl.from_arrow(table.select([c for c in cols if c in table.column_names]))
    df = df.filter(pl.col("unit_id").is_null() & pl.col("lang").is_not_null()).drop("unit_id")
    aggs = [pl.len().alias("docs"), *[pl.col(c).sum() for c in cols[3:] if c in df.columns]]
    pooled = df.group_by("lang").agg(aggs).with_columns(pl.lit("all").alias("domain"))
    rows = []
    for frame in (pooled, df.group_by(["lang", "domain"]).agg(aggs)):
        for r in frame.sort(["lang", "domain"]).iter_rows(named=True):
            cal = calib.get(r["lang"])
            for tok in tokenizers:
                rows.append(_mono_row(r, cal, tok))
    return rows


def _mono_row(r: dict, cal: dict | None, tok: str) -> dict[str, Any]:
    tokens = int(r.get(f"tokens_{tok}") or 0)
    row = {"lang": r["lang"], "domain": r["domain"], "tokenizer": tok, "docs": int(r["docs"]),
           "bytes": int(r["n_bytes"] or 0), "tokens": tokens, "estimate": True}  # fmt: skip
    if not cal:
        return row | {"est_units": None, "note": f"no parallel units in {r['lang']!r} to calibrate bytes per unit"}
    units = row["bytes"] / cal["bytes_per_unit"]
    lo_u, hi_u = row["bytes"] / cal["bpu_ci_high"], row["bytes"] / cal["bpu_ci_low"]
    return row | {
        "est_units": units, "est_units_low": lo_u, "est_units_high": hi_u,
        "tpsu_est": tokens / units if units else None,
        "tpsu_est_low": tokens / hi_u if hi_u else None, "tpsu_est_high": tokens / lo_u if lo_u else None,
        "bytes_per_unit": cal["bytes_per_unit"], "bpu_cv": cal["bpu_cv"],
    }  # fmt: skip


def tpsu_report(table: pa.Table, tokenizers: list[str] | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything written to ``tpsu.json``: definitions, premium rows, calibration, monolingual estimates."""
    table = normalise_names(table)
    tokenizers = tokenizers or token_columns(table)
    units = unit_frame(table, tokenizers)
    calib = calibration(units, n_boot, seed)
    rows = premium_rows(units, tokenizers, n_boot, seed)
    matrix: dict[str, dict[str, float | None]] = {}
    for r in rows:
        if r["domain"] == "all":
            matrix.setdefault(r["tokenizer"], {})[r["lang"]] = r["premium"]
    return {
        "definition": __doc__.split("Definitions")[1].split("Rows are")[0].strip(),
        "reference_lang": REFERENCE_LANG, "tokenizers": tokenizers, "bootstrap": {"n": n_boot, "seed": seed},
        "premium_matrix": matrix, "premium": rows, "calibration": calib,
        "monolingual": monolingual_rows(table, calib, tokenizers),
    }  # fmt: skip
