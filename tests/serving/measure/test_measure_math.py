"""Measurement math on hand-made ledgers: cost, counterfactual savings, goodput, decomposition, exports, projection."""

import json
import math

import pytest

from serving.measure.aggregate import cacheable_prefixes, decompose, stack_totals, with_quality_delta
from serving.measure.export import export
from serving.measure.ledger import add_counterfactuals, read_ledger, write_ledger
from serving.measure.prices import PriceError, PriceTable
from serving.measure.project import Traffic, Workload, project
from serving.measure.quality import bits_per_byte, chrf
from serving.measure.slo import goodput, percentile, tpot_ms

PRICES = PriceTable.from_per_million({"big": (2.0, 8.0), "small": (0.5, 1.0)})


def row(stack, rid, model, p, c, out_bytes, ttft=50.0, dur=250.0, lang="en", q=50.0, fwd=None):
    spend_p, spend_c = PRICES.cost(model, p, 0), PRICES.cost(model, 0, c)
    return {
        "request_id": rid, "startTime": "2026-11-25T10:00:00+00:00", "endTime": "2026-11-25T10:00:01+00:00",
        "completionStartTime": "2026-11-25T10:00:00.050000+00:00", "request_duration_ms": dur, "model": model,
        "model_id": model, "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
        "cache_read_input_tokens": 0, "spend": spend_p + spend_c, "spend_prompt": spend_p, "spend_completion": spend_c,
        "status": "success", "metadata": {}, "stack": stack, "lever": "x", "language": lang, "domain": "docs",
        "input_bytes": 100, "output_bytes": out_bytes, "routed_model": model, "escalations": 0,
        "target_forward_passes": c if fwd is None else fwd, "draft_tokens_proposed": 0, "draft_tokens_accepted": 0,
        "ttft_ms": ttft, "tpot_ms": tpot_ms(dur, ttft, c), "tokens_per_second": 10.0, "quality_metric": "chrf",
        "quality_value": q, "bits_per_byte": 1.0, "price_table_hash": PRICES.hash,
    }  # fmt: skip


def test_price_table_cost_and_missing_model():
    assert PRICES.cost("big", 1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    with pytest.raises(PriceError, match="no price for model 'nope'"):
        PRICES.cost("nope", 1, 1)
    with pytest.raises(ValueError, match="input_cost_per_token"):
        PriceTable({"m": {"input_cost_per_token": -1, "output_cost_per_token": 0}})


def test_counterfactual_same_bytes_and_zero_savings_for_baseline(tmp_path):
    rows = [
        row("baseline", "r1", "big", 100, 40, 200), row("baseline", "r2", "big", 50, 20, 100),
        row("optimized", "r1", "small", 60, 30, 300), row("optimized", "r2", "small", 30, 10, 100),
        row("baseline_again", "r1", "big", 100, 40, 200), row("baseline_again", "r2", "big", 50, 20, 100),
    ]  # fmt: skip
    add_counterfactuals(rows, "baseline")
    r1 = rows[2]
    # baseline spent 40 tokens on 200 output bytes; the optimized answer has 300 bytes -> 60 tokens at baseline rate
    assert r1["baseline_completion_tokens"] == pytest.approx(60)
    assert r1["saved_tokens"] == pytest.approx(100 + 60 - 90)
    assert r1["baseline_spend"] == pytest.approx(PRICES.cost("big", 100, 60))
    again = [r for r in rows if r["stack"] == "baseline_again"]
    assert all(r["saved_tokens"] == 0 and r["saved_spend"] == 0 for r in again)
    paths = write_ledger(rows, str(tmp_path))
    back = read_ledger(paths["parquet"])
    assert len(back) == 6 and sum(r["total_tokens"] for r in back) == sum(r["total_tokens"] for r in rows)
    assert read_ledger(paths["jsonl"])[0]["request_id"] == "r1"
    tot = stack_totals([r for r in rows if r["stack"] == "optimized"], 1.0, {})
    assert tot["billed_tokens"] == 130 and tot["saved_tokens"] == pytest.approx(
        sum(r["saved_tokens"] for r in rows[2:4])
    )
    assert tot["spend"] == pytest.approx(rows[2]["spend"] + rows[3]["spend"])


def test_goodput_and_percentiles_on_hand_made_latencies():
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 99) == 5 and math.isnan(percentile([], 50))
    assert tpot_ms(250, 50, 5) == 50 and tpot_ms(100, 100, 1) == 0
    rows = [{"ttft_ms": t, "tpot_ms": p, "status": s} for t, p, s in
            [(10, 5, "success"), (300, 5, "success"), (10, 60, "success"), (10, 5, "failure")]]  # fmt: skip
    g = goodput(rows, wall_s=2.0, ttft_slo_ms=200, tpot_slo_ms=50)
    assert g["meeting_slo"] == 1 and g["goodput_rps"] == 0.5 and g["throughput_rps"] == 2.0
    assert goodput(rows, 2.0, None, None)["meeting_slo"] == 3


def test_decomposition_adds_up_and_quality_delta_sits_beside():
    rows = [row("baseline", f"r{i}", "big", 100, 40, 200, q=50) for i in range(3)]
    rows += [row("tok", f"r{i}", "big", 60, 25, 200, q=49) for i in range(3)]
    rows += [row("route", f"r{i}", "small", 60, 25, 200, q=48, fwd=0) for i in range(3)]
    add_counterfactuals(rows, "baseline")
    totals = {s: stack_totals([r for r in rows if r["stack"] == s], 1.0, {}) for s in ("baseline", "tok", "route")}
    with_quality_delta(totals, "baseline")
    parts = decompose(totals, [("baseline", "baseline"), ("tok", "tokenizer"), ("route", "routing")])
    assert [p["lever"] for p in parts] == ["tokenizer", "routing"]
    assert sum(p["billed_tokens_saved"] for p in parts) == pytest.approx(totals["route"]["saved_tokens"])
    assert parts[0]["billed_tokens_saved"] == 3 * (140 - 85) and parts[1]["billed_tokens_saved"] == 0
    assert parts[1]["spend_saved"] > 0 and parts[0]["quality_delta"] == -1
    assert totals["route"]["quality_delta"] == -2 and totals["route"]["baseline"] == "baseline"


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
    add_counterfactuals(rows + [row("optimized", "r1", "small", 10, 5, 20)], "optimized")
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
    add_counterfactuals(rows, "baseline")
    w = Workload(traffic=[Traffic(language="hi", requests_per_day=1000, input_bytes=100, output_bytes=200)])
    res = project(rows, w, ["baseline", "opt"], "baseline", boot=50)
    b = res["stacks"]["baseline"]
    assert b["tokens"]["value"] == pytest.approx(30 * 1000 * 140) and b["tokens"]["ci95"][0] <= b["tokens"]["value"]
    assert res["stacks"]["opt"]["savings_vs_baseline"]["tokens"]["value"] == pytest.approx(30 * 1000 * 70)
    w2 = Workload(traffic=[Traffic(language="ta", requests_per_day=1, input_bytes=1, output_bytes=1)])
    assert "no ta requests measured" in project(rows, w2, ["baseline"], "baseline", boot=5)["notes"][0]
