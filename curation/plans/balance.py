"""Language balance: how documents, bytes, tokens and semantic units spread over languages, and how unequal that is.

Imbalance measures for a distribution p over languages: Shannon entropy in bits, normalised entropy
(entropy / log2(#languages), 1 = perfectly even), effective number of languages (2^entropy) and the top language's
share.
"""

from __future__ import annotations

import math
from typing import Any


def imbalance(counts: dict[str, float]) -> dict[str, Any]:
    """Entropy (bits), normalised entropy, effective languages and top-language share of a count mapping."""
    total = float(sum(v for v in counts.values() if v > 0))
    if total <= 0:
        return {"entropy_bits": 0.0, "entropy_norm": 0.0, "effective_languages": 0.0, "top": None, "top_share": 0.0}
    p = {k: v / total for k, v in counts.items() if v > 0}
    h = -sum(x * math.log2(x) for x in p.values())
    top = max(p, key=p.get)
    return {
        "entropy_bits": h,
        "entropy_norm": h / math.log2(len(p)) if len(p) > 1 else 1.0,
        "effective_languages": 2**h,
        "top": top,
        "top_share": p[top],
    }


def balance_report(per_lang: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``{measures: {measure: {lang: value}}, shares: {...}, imbalance: {measure: {...}}}`` from per-language sums.

    ``per_lang`` maps language -> {"docs": .., "bytes": .., "tokens_<tok>": .., "units": ..}.
    """
    measures = sorted({m for v in per_lang.values() for m in v})
    table = {m: {lang: float(v.get(m) or 0) for lang, v in sorted(per_lang.items())} for m in measures}
    shares = {m: {lang: x / (sum(vals.values()) or 1) for lang, x in vals.items()} for m, vals in table.items()}
    return {"measures": table, "shares": shares, "imbalance": {m: imbalance(vals) for m, vals in table.items()}}
