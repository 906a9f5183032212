"""Language sampling plans for a token budget B, computed in the tokens of a chosen tokenizer.

Methods (``n_l`` = tokens available in language *l* under the tokenizer, ``p_l = n_l / Σ n``):

- **proportional**: weight ``q_l = p_l``.
- **temperature**: ``q_l ∝ p_l^α`` (α=1 is proportional, α→0 uniform; 0.3 as in XLM-R/mT5).
- **unimax** (Chung et al. 2023, "UniMax", Algorithm 1): visit languages from smallest to largest; give each the
  remaining budget split uniformly over the remaining languages, capped at ``max_epochs × n_l``; what a capped
  language cannot use flows to the larger ones. When every language is capped the budget is not met
  (``budget_met: false``) rather than exceeding the epoch cap.

Each language gets ``weight`` (share of the budget), ``tokens`` (integers summing to the planned budget) and
``epochs`` (tokens / available tokens). Documents without a language (code, docs) are planned as ``und``; each plan
states their share (``und_share``, of the budget; ``und_available_share``, of the available tokens).

Because the same text costs different token counts under different tokenizers (the premium), a plan is recomputed
under every tokenizer with counts, and ``comparison`` shows per language how weight, tokens and the bytes of text
covered shift against the primary tokenizer.

Written to ``<run>/plans/<name>.json``; ``<run>/curated/tpsu.json``, ``balance.json`` and ``economics.json`` are
written by the same ``curate plan`` stage.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from curation.decide.decisions import normalise_names
from curation.plans.balance import balance_report
from curation.plans.economics import economics_report
from curation.plans.tpsu import token_columns, tpsu_report
from tokenwise.config import BaseConfig, load_section
from tokenwise.rundir import RunDir, hash_obj, read_json, write_json

log = logging.getLogger(__name__)

UND = "und"  # documents without a language (code, docs): planned like a language, reported as its own share


class PlanSpec(BaseConfig):
    """One named plan."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="File name under <run>/plans/.")
    method: Literal["proportional", "temperature", "unimax"] = Field(..., description="Sampling method.")
    alpha: float = Field(0.3, gt=0, le=1, description="Temperature exponent; 1 = proportional, lower = flatter.")
    max_epochs: float = Field(4.0, gt=0, description="UniMax cap on passes over a language's data.")


class PlanConfig(BaseConfig):
    """Sampling plans, TPSU/premium, language balance and economics (``tokenwise curate plan``)."""

    budget_tokens: int = Field(10_000_000, ge=1, description="Token budget B of every plan.")
    tokenizer: str = Field("cl100k_base", description="Primary tokenizer (a tokens_<name> signals column).")
    source: Literal["curated", "signals"] = Field("curated", description="Plan over kept docs or all scored docs.")
    plans: list[PlanSpec] = Field(
        default_factory=lambda: [
            PlanSpec(name="proportional", method="proportional"),
            PlanSpec(name="temperature", method="temperature", alpha=0.3),
            PlanSpec(name="unimax", method="unimax", max_epochs=4.0),
        ],
        description="Plans to write.",
    )
    bootstrap: int = Field(1000, ge=10, le=100_000, description="Bootstrap resamples for premium/calibration CIs.")
    response_ratio: float = Field(1.0, gt=0, description="Economics: response tokens per prompt-content token.")
    seed: int = 0


# ---------------------------------------------------------------- the maths


def proportional(avail: dict[str, float]) -> dict[str, float]:
    """Weights proportional to available tokens."""
    total = sum(avail.values())
    return {k: v / total for k, v in avail.items()}


def temperature(avail: dict[str, float], alpha: float) -> dict[str, float]:
    """Weights ∝ p_l^α."""
    p = proportional(avail)
    w = {k: v**alpha for k, v in p.items() if v > 0}
    s = sum(w.values())
    return {k: w.get(k, 0.0) / s for k in avail}


def unimax(avail: dict[str, float], budget: float, max_epochs: float) -> dict[str, float]:
    """UniMax budgets (Chung et al. 2023, Alg. 1): uniform over languages, each capped at max_epochs × its tokens."""
    out: dict[str, float] = {}
    remaining, left = float(budget), len(avail)
    for lang in sorted(avail, key=lambda k: (avail[k], k)):
        share = remaining / left
        out[lang] = min(share, max_epochs * avail[lang])
        remaining -= out[lang]
        left -= 1
    return out


def round_to_total(x: dict[str, float], total: int) -> dict[str, int]:
    """Integers that sum to ``total`` (largest remainder), in proportion to ``x``."""
    s = sum(x.values())
    exact = {k: v / s * total if s else 0.0 for k, v in x.items()}
    out = {k: int(np.floor(v)) for k, v in exact.items()}
    short = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:short]:
        out[k] += 1
    return out


def plan_languages(spec: PlanSpec, avail: dict[str, float], budget: int) -> tuple[dict[str, dict], int]:
    """Per-language ``{weight, tokens, epochs, available_tokens}`` and the planned total."""
    avail = {k: float(v) for k, v in avail.items() if v > 0}
    if spec.method == "proportional":
        alloc = {k: w * budget for k, w in proportional(avail).items()}
    elif spec.method == "temperature":
        alloc = {k: w * budget for k, w in temperature(avail, spec.alpha).items()}
    else:
        alloc = unimax(avail, budget, spec.max_epochs)
    total = sum(alloc.values())
    planned = int(round(total))
    tokens = round_to_total(alloc, planned)
    langs = {
        k: {"weight": alloc[k] / total if total else 0.0, "tokens": tokens[k],
            "epochs": tokens[k] / avail[k], "available_tokens": int(avail[k])}
        for k in sorted(avail)
    }  # fmt: skip
    return langs, planned


def build_plan(spec: PlanSpec, per_lang: dict[str, dict[str, float]], tokenizers: list[str], primary: str,
               budget: int) -> dict[str, Any]:  # fmt: skip
    """A plan under the primary tokenizer, the same plan under every other tokenizer, and the comparison."""
    by_tok = {}
    for tok in tokenizers:
        avail = {lang: v.get(f"tokens_{tok}", 0) for lang, v in per_lang.items()}
        langs, planned = plan_languages(spec, avail, budget)
        for lang, row in langs.items():
            bpt = per_lang[lang]["bytes"] / row["available_tokens"]
            row |= {"bytes_per_token": bpt, "bytes": row["tokens"] * bpt}
        by_tok[tok] = {"languages": langs, "planned_tokens": planned, "budget_met": planned >= budget}
    main = by_tok[primary]
    avail = {lang: v["available_tokens"] for lang, v in main["languages"].items()}
    comparison = []
    for tok, p in by_tok.items():
        for lang, row in p["languages"].items():
            ref = main["languages"].get(lang, {})
            comparison.append({
                "lang": lang, "tokenizer": tok, "weight": row["weight"], "tokens": row["tokens"],
                "epochs": row["epochs"], "bytes": row["bytes"],
                "weight_delta": row["weight"] - ref.get("weight", 0.0),
                "bytes_ratio": row["bytes"] / ref["bytes"] if ref.get("bytes") else None,
            })  # fmt: skip
    return {
        "name": spec.name, "method": spec.method, "alpha": spec.alpha if spec.method == "temperature" else None,
        "max_epochs": spec.max_epochs if spec.method == "unimax" else None, "budget": budget, "tokenizer": primary,
        "languages": main["languages"], "planned_tokens": main["planned_tokens"], "budget_met": main["budget_met"],
        "und_share": main["languages"].get(UND, {}).get("weight", 0.0),
        "und_available_share": avail.get(UND, 0) / max(1, sum(avail.values())),
        "by_tokenizer": by_tok, "comparison": comparison,
    }  # fmt: skip


# ---------------------------------------------------------------- the stage


def load_plan_table(run_dir: str, source: str) -> pa.Table:
    """Signals of all documents, or of kept ones only (``curated/decisions.parquet`` status == kept)."""
    run = RunDir(run_dir)
    files = sorted(glob.glob(run.path("signals", "shard-*.parquet")))
    if not files:
        raise FileNotFoundError(f"{run.path('signals')}: no signals shards; run `tokenwise curate score` first")

    table = normalise_names(pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive"))
    if source == "curated":
        dec = run.path("curated", "decisions.parquet")
        if not run.exists("curated", "decisions.parquet"):
            raise FileNotFoundError(f"{dec}: no decisions; run `tokenwise curate decide` or set plan.source: signals")
        d = pq.read_table(dec, columns=["id", "keep"])
        kept = d.filter(d.column("keep")).column("id")
        table = table.filter(pc.is_in(table.column("id"), value_set=kept))
    return table


def per_language(table: pa.Table, tokenizers: list[str], est_units: dict[str, float] | None = None) -> dict:
    """language -> {docs, bytes, tokens_<tok>..., units} sums."""
    cols = ["lang", "n_bytes", *[f"tokens_{t}" for t in tokenizers]]
    df = pl.from_arrow(table.select(cols)).with_columns(pl.col("lang").fill_null("und"))
    agg = df.group_by("lang").agg(pl.len().alias("docs"), pl.col("n_bytes").sum().alias("bytes"),
                                  *[pl.col(f"tokens_{t}").sum() for t in tokenizers])  # fmt: skip
    out = {r.pop("lang"): r for r in agg.sort("lang").iter_rows(named=True)}
    if "unit_id" in table.column_names:
        u = (
            pl.from_arrow(table.select(["lang", "unit_id"]))
            .drop_nulls()
            .group_by("lang")
            .agg(pl.col("unit_id").n_unique())
        )
        for lang, n in u.iter_rows():
            out[lang]["units_parallel"] = n
    for lang, v in out.items():
        v["units"] = v.get("units_parallel", 0) + (est_units or {}).get(lang, 0.0)
    return out


def run_plan(run_dir: str, cfg: PlanConfig) -> dict[str, Any]:
    """Write plans/<name>.json for every plan, plus curated/tpsu.json, balance.json and economics.json."""
    run = RunDir(run_dir)
    inputs = plan_inputs_hash(run, cfg)
    if run.is_done("plans", inputs):
        return {spec.name: read_json(run.path("plans", f"{spec.name}.json")) for spec in cfg.plans}
    all_docs = load_plan_table(run_dir, "signals")
    tokenizers = token_columns(all_docs)
    if cfg.tokenizer not in tokenizers:
        raise ValueError(f"plan.tokenizer {cfg.tokenizer!r}: no tokens_{cfg.tokenizer} column; have {tokenizers}")
    tpsu = tpsu_report(all_docs, tokenizers, cfg.bootstrap, cfg.seed)
    write_json(run.stage("curated", "tpsu.json"), tpsu)
    write_json(run.stage("curated", "economics.json"), economics_report(all_docs, tokenizers, cfg.response_ratio))
    table = all_docs if cfg.source == "signals" else load_plan_table(run_dir, "curated")
    est = {r["lang"]: r["est_units"] or 0.0 for r in tpsu["monolingual"]
           if r["domain"] == "all" and r["tokenizer"] == cfg.tokenizer}  # fmt: skip
    per_lang = per_language(table, tokenizers, est)
    write_json(run.stage("curated", "balance.json"), {"source": cfg.source, **balance_report(per_lang)})
    out = {}
    for spec in cfg.plans:
        plan = build_plan(spec, per_lang, tokenizers, cfg.tokenizer, cfg.budget_tokens)
        plan["source"] = cfg.source
        write_json(run.stage("plans", f"{spec.name}.json"), plan)
        out[spec.name] = plan
    run.mark_done("plans", inputs, {"plans": list(out)})
    return out


def plan_inputs_hash(run: RunDir, cfg: PlanConfig) -> str:
    """Hash of the config and the signals shards + decisions it reads (names and sizes)."""
    files = sorted(glob.glob(run.path("signals", "shard-*.parquet"))) + [run.path("curated", "decisions.parquet")]
    sizes = [(f, os.path.getsize(f)) for f in files if os.path.exists(f)]
    return hash_obj({"config": cfg.model_dump(), "files": sizes})


def fmt_plans(plans: dict[str, Any]) -> str:
    """One line: each plan's top language, its und (code/docs without a language) share, whether the budget was met."""
    parts = []
    for name, p in plans.items():
        top = max(p["languages"].items(), key=lambda kv: kv[1]["weight"])
        und = f", und (code/docs) {p.get('und_share', 0.0):.0%}"
        met = "" if p["budget_met"] else " (budget not met)"
        parts.append(f"{name}: top {top[0]} {top[1]['weight']:.0%}{und}{met}")
    return "; ".join(parts)


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``plan``: sampling plans, TPSU/premiums, balance and economics."""
    return fmt_plans(run_plan(run_dir, load_section(config_path, "plan", PlanConfig)))
