"""Sampling plan maths (proportional, temperature, UniMax) and the plan stage on real signals."""

from __future__ import annotations

import json

import pytest
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus, write_signals

from curation.plans.balance import imbalance
from curation.plans.sampling import PlanConfig, PlanSpec, plan_languages, run_plan, unimax

AVAIL = {"en": 900_000, "de": 60_000, "hi": 9_000, "ta": 1_000}


def _tokens(langs):
    return {k: v["tokens"] for k, v in langs.items()}


def test_temperature_alpha_one_equals_proportional():
    prop, _ = plan_languages(PlanSpec(name="p", method="proportional"), AVAIL, 100_000)
    t1, _ = plan_languages(PlanSpec(name="t", method="temperature", alpha=1.0), AVAIL, 100_000)
    assert _tokens(prop) == _tokens(t1)
    for k in AVAIL:
        assert t1[k]["weight"] == pytest.approx(prop[k]["weight"]) == pytest.approx(AVAIL[k] / sum(AVAIL.values()))


def test_lower_alpha_is_flatter():
    e = {
        a: imbalance(_tokens(plan_languages(PlanSpec(name="t", method="temperature", alpha=a), AVAIL, 10**6)[0]))
        for a in (1.0, 0.5, 0.3, 0.1)
    }
    assert e[1.0]["entropy_bits"] < e[0.5]["entropy_bits"] < e[0.3]["entropy_bits"] < e[0.1]["entropy_bits"]


@pytest.mark.parametrize("method", ["proportional", "temperature", "unimax"])
def test_budgets_sum_to_b(method):
    langs, planned = plan_languages(PlanSpec(name="x", method=method, max_epochs=4), AVAIL, 123_457)
    assert planned == 123_457 == sum(_tokens(langs).values())
    assert sum(v["weight"] for v in langs.values()) == pytest.approx(1.0)


def test_unimax_caps_epochs_and_matches_algorithm_by_hand():
    langs, planned = plan_languages(PlanSpec(name="u", method="unimax", max_epochs=2), AVAIL, 400_000)
    assert max(v["epochs"] for v in langs.values()) <= 2 + 1e-9
    # smallest first: ta min(100000, 2000)=2000; hi min(132666.7, 18000)=18000; de min(190000, 120000); en the rest
    assert _tokens(langs) == {"ta": 2000, "hi": 18000, "de": 120000, "en": 260000}
    assert unimax({"a": 10, "b": 10}, 100, 1.0) == {"a": 10, "b": 10}  # every language capped: budget not met
    small, planned = plan_languages(PlanSpec(name="u", method="unimax", max_epochs=1), {"a": 10, "b": 10}, 100)
    assert planned == 20 and all(v["epochs"] == 1.0 for v in small.values())


def test_plan_stage_writes_plans_under_each_tokenizer(tmp_path):
    docs = stdlib_docs() + parallel_docs(limit=20)
    write_corpus(tmp_path, docs, 60)
    write_signals(tmp_path, docs, 60)
    cfg = PlanConfig(budget_tokens=50_000, source="signals", bootstrap=50)
    plans = run_plan(str(tmp_path), cfg)
    assert set(plans) == {"proportional", "temperature", "unimax"}
    p = json.loads((tmp_path / "plans/unimax.json").read_text())
    assert p["tokenizer"] == "cl100k_base" and set(p["by_tokenizer"]) == {"cl100k_base", "bpe2k"}
    for tok, sub in p["by_tokenizer"].items():
        assert sum(v["tokens"] for v in sub["languages"].values()) == sub["planned_tokens"]
        for lang, v in sub["languages"].items():
            assert v["epochs"] <= 4 + 1e-9, (tok, lang)
            assert v["bytes"] == pytest.approx(v["tokens"] * v["bytes_per_token"])
    # same text, different premium: under the small BPE, Hindi text costs more tokens, so the same budget covers less
    cmp = {(r["lang"], r["tokenizer"]): r for r in p["comparison"]}
    assert cmp[("hi", "cl100k_base")]["bytes_ratio"] == 1.0
    prop = json.loads((tmp_path / "plans/proportional.json").read_text())
    assert (
        prop["by_tokenizer"]["bpe2k"]["languages"]["hi"]["bytes_per_token"]
        < prop["languages"]["hi"]["bytes_per_token"]
    )
    for name in ("tpsu.json", "balance.json", "economics.json"):
        assert (tmp_path / "curated" / name).exists()


def test_plan_stage_skips_when_inputs_unchanged(tmp_path):
    docs = parallel_docs(limit=8)
    write_corpus(tmp_path, docs, 60)
    write_signals(tmp_path, docs, 60)
    cfg = PlanConfig(budget_tokens=1000, source="signals", bootstrap=20)
    first = run_plan(str(tmp_path), cfg)
    mtime = (tmp_path / "plans/unimax.json").stat().st_mtime_ns
    assert run_plan(str(tmp_path), cfg) == first
    assert (tmp_path / "plans/unimax.json").stat().st_mtime_ns == mtime
    changed = run_plan(str(tmp_path), cfg.model_copy(update={"budget_tokens": 2000}))
    assert changed["unimax"]["budget"] == 2000


def test_plans_state_the_und_share():
    from curation.plans.sampling import build_plan, fmt_plans

    per_lang = {lang: {"bytes": n * 4, "tokens_t": n} for lang, n in {"en": 600, "de": 300, "und": 100}.items()}
    plan = build_plan(PlanSpec(name="p", method="proportional"), per_lang, ["t"], "t", 1000)
    assert plan["und_share"] == pytest.approx(0.1) and plan["und_available_share"] == pytest.approx(0.1)
    assert "und (code/docs) 10%" in fmt_plans({"p": plan})
