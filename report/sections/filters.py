"""Report section "Filters by rule and language" (outputs of the decide stage)."""

from __future__ import annotations

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import stage_json


def filters(ctx: Context) -> Section:
    summ = stage_json(ctx, "curated", "summary.json")
    sec = Section("filters", "Filters: kept and dropped per rule, overall and by language")
    steps = [r for r in summ["steps"] if r["group_by"] == "all"]
    tok = f"tokens_{summ['reference_tokenizer']}"
    thresholds = {r["name"]: r for r in summ.get("rules", [])}
    rows = [["step", "signal", "threshold", "docs in", "docs dropped", "drop %", "tokens dropped", "chars dropped"]]
    for r in steps:
        rule = thresholds.get(r["step"], {})
        thr = f"{rule.get('drop_if', '')} {rule.get('threshold')}" if rule else ""
        rows.append(
            [
                r["step"],
                rule.get("signal", ""),
                thr,
                r["docs_in"],
                r["docs_dropped"],
                100 * r["docs_dropped_share"],
                r.get(f"{tok}_dropped", 0),
                r.get("chars_dropped", 0),
            ]
        )
    sec.tables.append((f"Per-step table (tokens under {summ['reference_tokenizer']})", rows))
    by_lang = [r for r in summ["steps"] if r["group_by"] == "lang"]
    langs = sorted({r["group"] for r in by_lang}, key=lambda g: -sum(r["docs_in"] for r in by_lang if r["group"] == g))
    step_names = [r["step"] for r in steps]
    look = {(r["step"], r["group"]): r for r in by_lang}
    for measure, unit in (("docs", "documents"), (tok, "tokens")):
        vals = [
            [
                (look[(st, g)][f"{measure}_dropped"] / look[(st, g)][f"{measure}_in"])
                if (st, g) in look and look[(st, g)].get(f"{measure}_in")
                else None
                for g in langs[:30]
            ]
            for st in step_names
        ]
        sec.charts.append(
            charts.heatmap(
                f"filters_drop_rate_{'docs' if measure == 'docs' else 'tokens'}",
                f"Share of {unit} each rule drops, by language (% of what reaches the rule)",
                step_names,
                langs[:30],
                vals,
                xlabel="language",
                ylabel="rule",
            )
        )
    _fairness(sec, summ)
    sec.data = {
        "input": summ["input"],
        "kept": summ["kept"],
        "dropped": summ["dropped"],
        "quarantined": summ["quarantined"],
        "token_cost": summ["token_cost"],
        "by_reason": summ["by_reason"],
    }
    sec.data["headline"] = (
        f"{summ['kept']:,} of {summ['input']:,} documents kept "
        f"({summ['dropped']:,} dropped, {summ['quarantined']:,} quarantined)"
    )
    flagged = [f for f in summ.get("fairness", []) if f["flagged"] or f["above_english"]]
    sec.data["flagged_languages"] = [{k: f[k] for k in ("rule", "lang", "share", "median_share", "english_share")}
                                     for f in flagged]  # fmt: skip
    sec.intro = esc(
        f"input = kept + dropped + quarantined: {summ['input']:,} = {summ['kept']:,} + "
        f"{summ['dropped']:,} + {summ['quarantined']:,} "
        f"({'reconciles' if summ['reconciles'] else 'DOES NOT reconcile'}). "
        f"{len(flagged)} (rule, language) pairs drop more than {summ['config'].get('fairness_ratio', 2):g}x the "
        "median language's share or English's; the fairness table says why."
    )
    return sec


def _why(f: dict) -> str:
    """The numbers that explain one flagged (rule, language) drop share."""
    parts = []
    if f.get("exact_share_of_drops") is not None:
        parts.append(f"{f['exact_share_of_drops']:.0%} of its drops are exact copies of another document")
    if f.get("judged_share") is not None and f["judged_share"] < 1:
        parts.append(f"the rule judges {f['judged_share']:.0%} of its documents (applicability)")
    if f.get("mean_signal") is not None and f.get("mean_signal_all") is not None:
        parts.append(f"mean signal {f['mean_signal']:.3g} vs {f['mean_signal_all']:.3g} over all languages")
    return "; ".join(parts)


def _fairness(sec: Section, summ: dict) -> None:
    """Per rule and language: drop share against the median language and English; flags above the ratio."""
    rows_in = summ.get("fairness", [])
    if not rows_in:
        return
    ratio = summ["config"].get("fairness_ratio", 2)
    rows = [["rule", "language", "docs reaching", "dropped", "drop %", "median %", "English %",
             f"> {ratio:g}x median", f"> {ratio:g}x English", "why"]]  # fmt: skip
    for f in sorted(rows_in, key=lambda f: (f["rule"], -f["share"])):
        eng = f["english_share"]
        rows.append([f["rule"], f["lang"], f["docs_in"], f["docs_dropped"], 100 * f["share"],
                     100 * f["median_share"], None if eng is None else 100 * eng,
                     "FLAG" if f["flagged"] else "", "FLAG" if f["above_english"] else "",
                     _why(f) if f["flagged"] or f["above_english"] else ""])  # fmt: skip
    sec.tables.append((f"Fairness: drop share per rule and language (flagged above {ratio:g}x the median)", rows))
