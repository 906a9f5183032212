"""Report section "Tokenizers and premiums" (outputs of the tokenizer_eval stage)."""

from __future__ import annotations

from curation.tokenizer.evaluate import premium_table
from report import charts
from report.context import Context
from report.html import Section
from report.tables import stage_json
from tokenwise.rundir import read_json


def _training_samples(ctx: Context, rep: dict) -> list[list]:
    rows = [["tokenizer", "model", "sampled chars", "und share", "docs cut at max_doc_chars", "chars cut",
             "cut share"]]  # fmt: skip
    for res in rep["results"].values():
        spec = res.get("spec", "")
        if not spec.startswith("run:") or not ctx.run.exists("tokenizers", spec[4:], "meta.json"):
            continue
        meta = read_json(ctx.run.path("tokenizers", spec[4:], "meta.json"))
        if "config" not in meta or "cut" not in meta:
            continue  # an extension, or trained before the sample was described
        cut = meta["cut"]
        rows.append([meta["name"], meta["config"]["model"], meta["sampled_chars_total"], meta["und_share"],
                     cut["documents"], cut["chars_removed"], cut["share_removed"]])  # fmt: skip
    return rows


def tokenizers(ctx: Context) -> Section:
    rep = stage_json(ctx, "tokenizers", "eval.json")

    sec = Section("tokenizers", "Tokenizers: premium vs English and tokens saved on held-out text")
    names = list(rep["results"])
    prem = premium_table(rep)
    num = lambda v: v if isinstance(v, int | float) else None  # noqa: E731
    prem = [r for r in prem if any(num(r[n]) is not None for n in names) and r["language"] != "eng_Latn"]
    ref = rep.get("reference") or names[0]
    prem.sort(key=lambda r: -(num(r.get(ref)) or 0))
    labels = [r["language"] for r in prem[:40]]
    sec.charts.append(
        charts.hbar(
            "tokenizers_premium",
            "Premium vs English on parallel held-out units (tokens(lang) / tokens(eng_Latn))",
            labels,
            {n: [num(r[n]) for r in prem[:40]] for n in names},
            xlabel="premium (× English tokens)",
            ylabel="language",
            ref=1.0,
            ref_label="parity",
        )
    )
    rows = [
        [
            "tokenizer",
            "vocab",
            "premium max",
            "worst language",
            "premium mean",
            "fairness Gini",
            "unk max",
            "round-trip failures",
            *[
                k
                for k in next(iter(rep["results"].values()))["summary"]
                if k.startswith("tokens_saved_vs_") and k.count("_") <= 4
            ],
        ]
    ]
    for n, res in rep["results"].items():
        sm = res["summary"]
        rows.append(
            [
                n,
                res["vocab_size"],
                sm.get("premium_max"),
                sm.get("premium_worst_language"),
                sm.get("premium_mean"),
                sm.get("fairness_gini"),
                sm.get("unk_rate_max"),
                sm.get("roundtrip_failures"),
                *[sm.get(k) for k in rows[0][8:]],
            ]
        )
    sec.tables.append(
        ("Summary per tokenizer (savings are 1 − tokens/reference tokens on the same held-out bytes)", rows)
    )
    sample = _training_samples(ctx, rep)
    if len(sample) > 1:
        sec.tables.append(("Training sample per trained tokenizer (und = code/docs without a language)", sample))
    sec.data = {"premium": prem, "summary": {n: r["summary"] for n, r in rep["results"].items()}}
    best = min(names, key=lambda n: rep["results"][n]["summary"].get("premium_max") or 1e9)
    sec.data["headline"] = (
        f"lowest worst-language premium: {best} ({rep['results'][best]['summary'].get('premium_max')})"
    )
    return sec
