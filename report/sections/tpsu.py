"""Report section "Tokens per semantic unit" (outputs of the plan stage)."""

from __future__ import annotations

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import stage_json


def tpsu(ctx: Context) -> Section:
    data = stage_json(ctx, "curated", "tpsu.json")
    sec = Section("tpsu", "Tokens per semantic unit and premium vs English")
    matrix = data["premium_matrix"]
    toks = list(matrix)
    langs = sorted(
        {lg for m in matrix.values() for lg in m if lg != data.get("reference_lang", "en")},
        key=lambda lg: -max((matrix[t].get(lg) or 0) for t in toks),
    )
    sec.charts.append(
        charts.hbar(
            "tpsu_premium",
            "Premium vs English on parallel units (tokens(lang) / tokens(en)), sorted",
            langs[:45],
            {t: [matrix[t].get(lg) for lg in langs[:45]] for t in toks},
            xlabel="premium (× English tokens)",
            ylabel="language",
            ref=1.0,
            ref_label="parity",
        )
    )
    rows = [["language", "domain", "tokenizer", "units", "TPSU", "TPSU (en)", "premium", "95% CI", "median unit"]]
    for r in sorted(data["premium"], key=lambda r: (r["tokenizer"], -(r["premium"] or 0))):
        if r["domain"] == "all":
            rows.append(
                [
                    r["lang"],
                    r["domain"],
                    r["tokenizer"],
                    r["n_units"],
                    r["tpsu"],
                    r["tpsu_en"],
                    r["premium"],
                    f"[{r['premium_ci_low']:.3g}, {r['premium_ci_high']:.3g}]",
                    r["premium_median_unit"],
                ]
            )
    sec.tables.append(("TPSU per language × tokenizer (parallel units only)", rows))
    if data.get("monolingual"):
        mono = [["language", "domain", "tokenizer", "docs", "est. units", "TPSU (estimate)", "bytes/unit CV"]] + [
            [m["lang"], m["domain"], m["tokenizer"], m["docs"], m["est_units"], m["tpsu_est"], m["bpu_cv"]]
            for m in data["monolingual"][:60]
        ]
        sec.tables.append(
            ("Monolingual text: units estimated from bytes (an estimate; spread in the last column)", mono)
        )
    sec.intro = esc(data.get("definition", ""))
    sec.data = {"premium_matrix": matrix}
    worst = {
        t: max(((lg, p) for lg, p in matrix[t].items() if p), key=lambda x: x[1], default=(None, None)) for t in toks
    }
    sec.data["headline"] = "; ".join(f"{t}: worst {lg} ×{p:.2f}" for t, (lg, p) in worst.items() if p)
    return sec
