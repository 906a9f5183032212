"""Report section "Drop waterfall" (outputs of the decide stage)."""

from __future__ import annotations

import random

import pyarrow.parquet as pq

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import example_list, stage_json, texts_by_id


def waterfall(ctx: Context) -> Section:
    summ = stage_json(ctx, "curated", "summary.json")
    tok = f"tokens_{summ['reference_tokenizer']}"
    steps = [r for r in summ["steps"] if r["group_by"] == "all"]
    sec = Section("waterfall", "Drop waterfall: documents and tokens in → out at each step")
    for measure, unit in (("docs", "documents"), (tok, "tokens")):
        seq = [("input", steps[0][f"{measure}_in"])] + [
            (r["step"] if r["step"] != "signals" else "quarantined", r[f"{measure}_dropped"]) for r in steps
        ]
        sec.charts.append(
            charts.waterfall(
                f"waterfall_{'docs' if measure == 'docs' else 'tokens'}",
                f"{unit.capitalize()} in → out by step",
                seq,
                xlabel=unit,
            )
        )
    by_lang = [r for r in summ["steps"] if r["group_by"] == "lang"]
    langs = sorted({r["group"] for r in by_lang})
    rows = [["language", "docs in", *[r["step"] for r in steps], "docs kept"]]
    for g in langs:
        rs = [r for r in by_lang if r["group"] == g]
        rows.append([g, rs[0]["docs_in"], *[r["docs_dropped"] for r in rs], rs[-1]["docs_kept"]])
    sec.tables.append(("Documents dropped at each step, by language", rows))
    sec.html_parts.append(_decision_examples(ctx))
    return sec


def _decision_examples(ctx: Context, per_reason: int = 2) -> str:

    d = pq.read_table(ctx.need("curated", "decisions.parquet"), columns=["id", "status", "reason"]).to_pylist()
    rng = random.Random(ctx.seed)
    groups: dict[str, list[str]] = {}
    for r in d:
        groups.setdefault(r["reason"] or r["status"], []).append(r["id"])
    picks = {g: rng.sample(ids, min(per_reason, len(ids))) for g, ids in sorted(groups.items())}
    texts = texts_by_id(ctx.run.root, [i for v in picks.values() for i in v])
    parts = [f"<h3>Examples per outcome (seed {ctx.seed})</h3>"]
    for g, ids in picks.items():
        parts.append(
            f"<details><summary>{esc(g)} ({len(groups[g]):,} documents)</summary>"
            f"{example_list([(i, texts.get(i, '')) for i in ids])}</details>"
        )
    return "".join(parts)
