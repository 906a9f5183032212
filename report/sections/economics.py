"""Report section "Language economics" (outputs of the plan stage)."""

from __future__ import annotations

from report.context import Context
from report.html import Section, esc
from report.tables import stage_json


def economics(ctx: Context) -> Section:
    data = stage_json(ctx, "curated", "economics.json")
    sec = Section("economics", "Language economics: serving natively vs translating to English first")
    rows = [
        [
            "language",
            "tokenizer",
            "units",
            "premium",
            "native tokens",
            "translate-first tokens",
            "translate / native",
            "cheaper",
        ]
    ]
    for r in sorted(data["rows"], key=lambda r: (r["tokenizer"], -(r["premium"] or 0))):
        rows.append(
            [
                r["lang"],
                r["tokenizer"],
                r["n_units"],
                r["premium"],
                r["native_tokens"],
                r["translate_tokens"],
                r["translate_over_native"],
                r["cheaper"],
            ]
        )
    sec.tables.append(("Native vs translate-first cost per language (tokens on the same parallel units)", rows))
    sec.intro = esc(f"{data.get('definition', '')} Break-even premium: {data.get('break_even_premium')}.")
    sec.data = {"break_even_premium": data.get("break_even_premium"), "rows": data["rows"]}
    return sec
