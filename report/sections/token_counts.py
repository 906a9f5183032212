"""Report section "Token counts" (outputs of the tokens stage)."""

from __future__ import annotations

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import stage_json


def token_counts(ctx: Context) -> Section:
    """The tokens stage's counts of the kept documents: tokens and bytes per token, per language and tokenizer."""
    data = stage_json(ctx, "tokens", "curated", "counts.json")
    toks = list(data["totals"])
    sec = Section("tokens", "Token counts of the curated corpus, by language and tokenizer")
    rows = [["language", "docs", "bytes", *toks, *[f"bytes/token {t}" for t in toks]]]
    per_token: dict[str, dict[str, float]] = {t: {} for t in toks}
    for lang, r in data["by_lang"].items():
        bpt = {t: round(r["bytes"] / r[t], 3) if r.get(t) else None for t in toks}
        rows.append([lang, r["docs"], r["bytes"], *[r.get(t, 0) for t in toks], *bpt.values()])
        for t, v in bpt.items():
            per_token[t][lang] = v or 0.0
    sec.tables.append(("Documents, bytes and tokens per language (kept documents, all splits)", rows))
    labels = sorted(data["by_lang"], key=lambda lang: per_token[toks[0]].get(lang, 0))
    sec.charts.append(
        charts.hbar(
            "tokens_bytes_per_token",
            "UTF-8 bytes per token by language (higher = fewer tokens for the same text)",
            labels,
            {t: [per_token[t].get(lab, 0.0) for lab in labels] for t in toks},
            xlabel="bytes per token",
            ylabel="language",
        )
    )
    where = data.get("where") or {}
    totals = ", ".join(f"{t} {n:,}" for t, n in data["totals"].items())
    sec.intro = esc(
        f"{data['docs']:,} documents in {data['shards']} shards: {totals} tokens. Counted on the "
        f"{where.get('executor', '?')} executor ({where.get('workers', '?')} workers"
        f"{', ' + str(where['address']) if where.get('address') else ''})."
    )
    sec.data = {"totals": data["totals"], "docs": data["docs"], "bytes_per_token": per_token, "where": where}
    return sec
