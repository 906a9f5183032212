"""Language economics: serving content natively in a language vs translating it to English first, in tokens.

Per parallel unit *u* shared by language *l* and English, under tokenizer *t* (T_l = tokens of the unit in *l*,
T_en in English, r = response tokens per prompt-content token, default 1):

- **native** = (1 + r) · T_l — the model reads the content and answers in *l*.
- **translate-first** = T_l + T_en + (1 + r) · T_en — translation input in *l*, English translation output, then
  English processing (prompt + response). Back-translation of the answer is not counted (as specified).
- translate-first is cheaper when the premium P = ΣT_l/ΣT_en exceeds the **break-even premium** (2 + r) / r
  (3 for r = 1).

``economics.json``: ``{definition, response_ratio, break_even_premium, rows: [{lang, tokenizer, n_units, tokens,
tokens_en, premium, native_tokens, translate_tokens, translate_over_native, cheaper}]}``.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from curation.decide.decisions import normalise_names
from curation.plans.tpsu import REFERENCE_LANG, unit_frame


def economics_rows(table: pa.Table, tokenizers: list[str], response_ratio: float = 1.0) -> list[dict[str, Any]]:
    """One row per (language, tokenizer) over units the language shares with English."""


    units = unit_frame(normalise_names(table), tokenizers)
    pooled = units.group_by(["unit_id", "lang"]).agg(pl.all().exclude("domain").sum())
    en = pooled.filter(pl.col("lang") == REFERENCE_LANG).drop("lang")
    both = pooled.join(en, on="unit_id", suffix="_en")
    rows = []
    r = response_ratio
    for (lang,), g in sorted(both.group_by(["lang"]), key=lambda kv: kv[0]):
        for tok in tokenizers:
            t_l, t_en = int(g[f"tokens_{tok}"].sum()), int(g[f"tokens_{tok}_en"].sum())
            native = (1 + r) * t_l
            translate = t_l + t_en + (1 + r) * t_en
            rows.append({
                "lang": lang, "tokenizer": tok, "n_units": g.height, "tokens": t_l, "tokens_en": t_en,
                "premium": t_l / t_en if t_en else None, "native_tokens": native, "translate_tokens": translate,
                "translate_over_native": translate / native if native else None,
                "cheaper": "native" if native <= translate else "translate",
            })  # fmt: skip
    return rows


def economics_report(table: pa.Table, tokenizers: list[str], response_ratio: float = 1.0) -> dict[str, Any]:
    """The ``economics.json`` document."""
    return {
        "definition": __doc__.split("\n\n")[1].strip(),
        "reference_lang": REFERENCE_LANG,
        "response_ratio": response_ratio,
        "break_even_premium": (2 + response_ratio) / response_ratio,
        "rows": economics_rows(table, tokenizers, response_ratio),
    }
