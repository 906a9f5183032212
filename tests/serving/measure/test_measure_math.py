"""Measurement math on hand-made ledgers: cost, counterfactual savings, goodput, decomposition, exports, projection."""

import json
import math

import pytest

from serving.measure.aggregate import (
    by_group,
    cacheable_prefixes,
    decompose,
    decompose_by_group,
    stack_totals,
    with_group_quality_delta,
    with_quality_delta,
)
from serving.measure.export import export
from serving.measure.ledger import add_counterfactuals, read_ledger, write_ledger
from serving.measure.prices import PriceError, PriceTable
from serving.measure.project import Traffic, Workload, project
from serving.measure.quality import bits_per_byte, chrf
from serving.measure.slo import goodput, percentile, tpot_ms
from tokenwise.tokenizer_specs import load_tokenizer

PRICES = PriceTable.from_per_million({"big": (2.0, 8.0), "small": (0.5, 1.0)})
CL100K = load_tokenizer("tiktoken:cl100k_base")  # the baseline stack's tokenizer in these hand-made ledgers
PROMPT = "Summarise the release notes for the new version in two sentences."


def count(text: str) -> int:
    return len(CL100K.encode(text))


def counterfactuals(rows, baseline="baseline"):
    return add_counterfactuals(rows, baseline, count, "cl100k_base", PRICES)


def row(stack, rid, model, p, c, out_bytes, ttft=50.0, dur=250.0, lang="en", q=50.0, fwd=None, text=None):
    """A ledger row billed p + c tokens in its own tokenizer; its completion text is ``text`` (default: ``c`` words
    of ``out_bytes`` bytes in total)."""
    text = text if text is not None else ("word " * c)[:out_bytes].ljust(out_bytes, "x")
    spend_p, spend_c = PRICES.cost(model, p, 0), PRICES.cost(model, 0, c)
    return {
        "request_id": rid, "startTime": "2026-11-25T10:00:00+00:00", "endTime": "2026-11-25T10:00:01+00:00",
        "completionStartTime": "2026-11-25T10:00:00.050000+00:00", "request_duration_ms": dur, "model": model,
        "model_id": model, "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
        "cache_read_input_tokens": 0, "spend": spend_p + spend_c, "spend_prompt": spend_p, "spend_completion": spend_c,
        "status": "success", "metadata": {}, "stack": stack, "lever": "x", "language": lang, "domain": "docs",
        "input_bytes": 100, "output_bytes": len(text.encode()), "routed_model": model, "escalations": 0,
        "target_forward_passes": c if fwd is None else fwd, "draft_tokens_proposed": 0, "draft_tokens_accepted": 0,
        "ttft_ms": ttft, "tpot_ms": tpot_ms(dur, ttft, c), "tokens_per_second": 10.0, "quality_metric": "chrf",
        "quality_value": q, "bits_per_byte": 1.0, "price_table_hash": PRICES.hash, "prompt_text": PROMPT,
        "completion_text": text,
    }  # fmt: skip


def test_price_table_cost_and_missing_model():
    assert PRICES.cost("big", 1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    with pytest.raises(PriceError, match="no price for model 'nope'"):
        PRICES.cost("nope", 1, 1)
    with pytest.raises(ValueError, match="input_cost_per_token"):
        PriceTable({"m": {"input_cost_per_token": -1, "output_cost_per_token": 0}})


def test_counterfactual_counts_the_same_text_not_the_same_bytes(tmp_path):
    """Two stacks answer with the same number of bytes but different text: the baseline's tokenizer on each text gives
    different counterfactuals. A tokens-per-byte rate carried over from the baseline's own answer gives both stacks
    the baseline's count, which this test rejects."""
    prose = "the cat sat on the mat and the dog sat on the log "  # few tokens per byte under cl100k
    hexes = "9f3a 7c2e b81d 04fa e6c9 5d7b a2e0 3f8c 1b6d c7e4 "  # many tokens per byte
    assert len(prose.encode()) == len(hexes.encode()) == 50
    rows = [
        row("baseline", "r1", "big", 14, 12, 50, text=prose),
        row("optimized", "r1", "small", 14, 12, 50, text=hexes),
        row("baseline_again", "r1", "big", 14, 12, 50, text=prose),
    ]  # fmt: skip
    counterfactuals(rows)
    base, opt, again = rows
    assert base["baseline_completion_tokens"] == count(prose) and opt["baseline_completion_tokens"] == count(hexes)
    assert opt["baseline_completion_tokens"] > 1.5 * base["baseline_completion_tokens"]
    per_byte_shortcut = base["completion_tokens"] / base["output_bytes"] * opt["output_bytes"]
    assert opt["baseline_completion_tokens"] != pytest.approx(per_byte_shortcut)
    assert opt["baseline_prompt_tokens"] == count(PROMPT) and opt["baseline_model"] == "big"
    assert opt["saved_tokens"] == count(PROMPT) + count(hexes) - 26
    assert opt["baseline_spend"] == pytest.approx(PRICES.cost("big", count(PROMPT), count(hexes)))
    assert opt["saved_spend"] == pytest.approx(opt["baseline_spend"] - opt["spend"])
    # the same text gets the same counterfactual whichever stack wrote it
    assert again["saved_tokens"] == base["saved_tokens"] and again["saved_spend"] == base["saved_spend"]
    paths = write_ledger(rows, str(tmp_path))
    back = read_ledger(paths["parquet"])
    assert [r["completion_text"] for r in back] == [prose, hexes, prose] and back[1]["prompt_text"] == PROMPT
    assert [r["saved_tokens"] for r in back] == [r["saved_tokens"] for r in rows]
    tot = stack_totals([opt], 1.0, {})
    assert tot["baseline_tokens"] == count(PROMPT) + count(hexes) and tot["saved_tokens"] == opt["saved_tokens"]
    assert tot["billed_per_baseline_token"] == pytest.approx(26 / tot["baseline_tokens"])


def test_counterfactual_needs_the_baseline_row():
    with pytest.raises(ValueError, match="no row for requests"):
        counterfactuals([row("optimized", "r9", "small", 1, 1, 5)])


def test_goodput_and_percentiles_on_hand_made_latencies():
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 99) == 5 and math.isnan(percentile([], 50))
    assert tpot_ms(250, 50, 5) == 50 and tpot_ms(100, 100, 1) == 0
    rows = [{"ttft_ms": t, "tpot_ms": p, "status": s} for t, p, s in
            [(10, 5, "success"), (300, 5, "success"), (10, 60, "success"), (10, 5, "failure")]]  # fmt: skip
    g = goodput(rows, wall_s=2.0, ttft_slo_ms=200, tpot_slo_ms=50)
    assert g["meeting_slo"] == 1 and g["goodput_rps"] == 0.5 and g["throughput_rps"] == 2.0
    assert goodput(rows, 2.0, None, None)["meeting_slo"] == 3


def test_decomposition_adds_up_and_quality_delta_sits_beside():
    long_answer = "the quarterly figures show steady growth across every region we serve "
    rows = [row("baseline", f"r{i}", "big", 40, 30, 70, q=50, text=long_answer, lang=lg)
            for i, lg in enumerate(["en", "de", "en"])]  # fmt: skip
    rows += [row("tok", f"r{i}", "big", 20, 9, 70, q=49, text=long_answer, lang=lg)
             for i, lg in enumerate(["en", "de", "en"])]  # fmt: skip
    rows += [row("route", f"r{i}", "small", 20, 9, 70, q=48, fwd=0, text=long_answer, lang=lg)
             for i, lg in enumerate(["en", "de", "en"])]  # fmt: skip
    counterfactuals(rows)
    order = [("baseline", "baseline"), ("tok", "tokenizer"), ("route", "routing")]
    totals = {s: stack_totals([r for r in rows if r["stack"] == s], 1.0, {}) for s, _ in order}
    with_quality_delta(totals, "baseline")
    parts = decompose(totals, order)
    assert [p["lever"] for p in parts] == ["tokenizer", "routing"]
    # share points add up to the last stack's saved share minus the baseline's own
    assert sum(p["saved_tokens_share"] for p in parts) == pytest.approx(
        totals["route"]["saved_tokens_share"] - totals["baseline"]["saved_tokens_share"]
    )
    assert sum(p["saved_spend_share"] for p in parts) == pytest.approx(
        totals["route"]["saved_spend_share"] - totals["baseline"]["saved_spend_share"]
    )
    b = 3 * (count(PROMPT) + count(long_answer))
    assert parts[0]["billed_tokens_saved"] == pytest.approx((70 - 29) * 3 / b * b)
    assert parts[1]["billed_tokens_saved"] == 0 and parts[1]["spend_saved"] > 0 and parts[0]["quality_delta"] == -1
    assert totals["route"]["quality_delta"] == -2 and totals["route"]["baseline"] == "baseline"
    # per language, on the same basis, with the quality change against the baseline's same language
    recs = with_group_quality_delta(by_group(rows, ("language",), {}, {}), "baseline", ("language",))
    per_lang = decompose_by_group(recs, order, "language")
    assert set(per_lang) == {"en", "de"}
    assert per_lang["de"][0]["saved_tokens_share"] == pytest.approx(parts[0]["saved_tokens_share"])
    de_route = next(r for r in recs if r["stack"] == "route" and r["language"] == "de")
    assert de_route["quality_delta"] == -2


def test_cacheable_prefixes():
    prompts = [("a", [1, 2, 3, 4, 5, 6]), ("b", [1, 2, 3, 4, 9]), ("c", [1, 2, 3, 4, 5, 6]), ("d", [7, 8])]
    res = cacheable_prefixes(prompts, min_tokens=4)
    assert res["exact_duplicates"] == 1 and res["cacheable_tokens"] == 4 + 6 and res["prompt_tokens"] == 19


def test_quality_metrics():
    assert chrf("the cat sat", "the cat sat") == pytest.approx(100)
    assert chrf("xyz", "the cat sat") == 0
    assert 0 < chrf("the cat", "the cat sat") < 100
    assert bits_per_byte([-math.log(2)] * 4, "abcd") == pytest.approx(1.0)


def test_exports_have_the_tools_shapes():
    rows = [row("optimized", "r1", "small", 10, 5, 20)]
    counterfactuals(rows + [row("optimized", "r1", "small", 10, 5, 20)], "optimized")
    lite = json.loads(export(rows, "litellm").splitlines()[0])
    assert lite["spend"] == rows[0]["spend"] and "saved_tokens" in lite["metadata"]["tokenwise"]
    lf = json.loads(export(rows, "langfuse").splitlines()[0])
    assert lf["body"]["usageDetails"] == {"input": 10, "output": 5, "total": 15}
    assert "saved_tokens" in lf["body"]["metadata"] and "saved_tokens" not in lf["body"]["usageDetails"]
    otel = json.loads(export(rows, "otel"))
    attrs = {a["key"]: a["value"] for a in otel["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "10"} and "tokenwise.saved_tokens" in attrs


def test_projection_scales_rates_and_carries_intervals():
    rows = [row("baseline", f"r{i}", "big", 100, 40, 200, lang="hi") for i in range(5)]
    rows += [row("opt", f"r{i}", "small", 50, 20, 200, lang="hi") for i in range(5)]
    counterfactuals(rows)
    w = Workload(traffic=[Traffic(language="hi", requests_per_day=1000, input_bytes=100, output_bytes=200)])
    res = project(rows, w, ["baseline", "opt"], "baseline", boot=50)
    b, o = res["stacks"]["baseline"], res["stacks"]["opt"]
    assert b["tokens"]["value"] == pytest.approx(30 * 1000 * 140) and b["tokens"]["ci95"][0] <= b["tokens"]["value"]
    # savings on the same text: the baseline tokenizer's rate on opt's own measured text, not the baseline's answers
    opt_row = rows[5]
    base_tokens = 30 * 1000 * (opt_row["baseline_prompt_tokens"] + opt_row["baseline_completion_tokens"])
    assert o["baseline_tokens"]["value"] == pytest.approx(base_tokens)
    assert o["savings_vs_baseline"]["tokens"]["value"] == pytest.approx(base_tokens - 30 * 1000 * 70)
    assert o["savings_vs_baseline"]["cost"]["value"] == pytest.approx(
        30 * 1000 * (PRICES.cost("big", opt_row["baseline_prompt_tokens"], opt_row["baseline_completion_tokens"])
                     - PRICES.cost("small", 50, 20))
    )  # fmt: skip
    w2 = Workload(traffic=[Traffic(language="ta", requests_per_day=1, input_bytes=1, output_bytes=1)])
    assert "no ta requests measured" in project(rows, w2, ["baseline"], "baseline", boot=5)["notes"][0]
