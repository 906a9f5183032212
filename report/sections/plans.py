"""Report section "Sampling plans" (outputs of the plan stage)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

from report import charts
from report.context import Context, Unavailable
from report.html import Section


def plans(ctx: Context) -> Section:
    files = sorted(f for f in glob.glob(f"{ctx.run.root}/plans/*.json") if not Path(f).name.startswith("_"))
    if not files:
        raise Unavailable(f"no plans/*.json in {ctx.run.root}; run `tokenwise curate plan` first")
    sec = Section("plans", "Sampling plans for the token budget")
    plans_ = {Path(f).stem: json.loads(Path(f).read_text()) for f in files}
    langs = sorted(
        {lg for p in plans_.values() for lg in p["languages"]},
        key=lambda lg: -max(p["languages"].get(lg, {}).get("weight", 0) for p in plans_.values()),
    )
    sec.charts.append(
        charts.hbar(
            "plans_weights",
            "Sampling weight per language under each plan",
            langs[:45],
            {n: [100 * p["languages"].get(lg, {}).get("weight", 0) for lg in langs[:45]] for n, p in plans_.items()},
            xlabel="share of the token budget (%)",
            ylabel="language",
        )
    )
    sec.charts.append(
        charts.hbar(
            "plans_epochs",
            "Epochs over each language's data under each plan",
            langs[:45],
            {n: [p["languages"].get(lg, {}).get("epochs", 0) for lg in langs[:45]] for n, p in plans_.items()},
            xlabel="epochs",
            ylabel="language",
        )
    )
    rows = [["plan", "method", "alpha", "max epochs", "budget", "tokenizer", "planned tokens", "budget met",
             "und (code/docs) share"]]  # fmt: skip
    for n, p in plans_.items():
        rows.append(
            [
                n,
                p["method"],
                p.get("alpha"),
                p.get("max_epochs"),
                p["budget"],
                p["tokenizer"],
                p["planned_tokens"],
                p["budget_met"],
                p.get("und_share"),
            ]
        )
    sec.tables.append(("Plans", rows))
    first = next(iter(plans_.values()))
    if first.get("comparison"):
        comp = [["language", "tokenizer", "weight", "tokens", "bytes", "weight Δ vs plan tokenizer"]] + [
            [c["lang"], c["tokenizer"], c["weight"], c["tokens"], c["bytes"], c["weight_delta"]]
            for c in first["comparison"][:80]
        ]
        sec.tables.append((f"How plan “{first['name']}” shifts when the tokenizer changes (same text)", comp))
    sec.data = {n: {lg: v.get("weight") for lg, v in p["languages"].items()} for n, p in plans_.items()}
    return sec
