"""Report section "Language distribution" (outputs of the corpus stage)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from report import charts
from report.context import Context, Unavailable
from report.html import Section, esc
from report.tables import corpus_table, read_shards, shares


def languages(ctx: Context) -> Section:
    before = corpus_table(ctx.run.root)
    sec = Section("languages", "Language distribution: before and after filtering, and under the sampling plan")
    series: dict[str, dict[str, float]] = {"corpus (bytes share)": shares(before, "lang", "n_bytes")}
    notes = []
    try:
        after = read_shards(ctx.run.root, "curated", ["id", "text", "lang"])
        after = after.append_column("n_bytes", pc.binary_length(after["text"].cast(pa.large_binary()))).drop(["text"])
        series["curated (bytes share)"] = shares(after, "lang", "n_bytes")
    except Unavailable as e:
        notes.append(str(e))
    plan_files = sorted(f for f in glob.glob(f"{ctx.run.root}/plans/*.json") if not Path(f).name.startswith("_"))
    for pf in plan_files[:2]:
        plan = json.loads(Path(pf).read_text())
        langs = plan.get("languages", {})
        w = {k: float(v.get("weight", 0)) for k, v in langs.items() if isinstance(v, dict)}
        if w:
            series[f"plan {Path(pf).stem} (token weight)"] = w
    if not plan_files:
        notes.append("no sampling plan in plans/")
    labels = sorted(series["corpus (bytes share)"], key=lambda k: -series["corpus (bytes share)"][k])[:45]
    sec.charts.append(
        charts.hbar(
            "languages_shares",
            "Share of each language before/after filtering and in the plan",
            labels,
            {k: [v.get(lab, 0.0) * 100 for lab in labels] for k, v in series.items()},
            xlabel="share (%)",
            ylabel="language",
        )
    )
    sec.data = {"shares": series}
    if notes:
        sec.intro = esc("; ".join(notes))
    return sec
