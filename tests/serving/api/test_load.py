"""A bounded load test against a real server on 127.0.0.1 (bench/load.py's phases at test size).

A fixed number of streaming greedy requests at a fixed concurrency, three rounds: no failed request, TTFT/TPOT
percentiles reported, goodput under the SLOs, resident memory flat across rounds, every output equal to the same
prompt sent alone. Overload: one slot and a queue of one hit by a burst answer 429 with Retry-After at once, never
a timeout, and the server serves normally afterwards.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
from _paths import REPO

ROOT = REPO


def _bench():
    if str(ROOT / "bench") not in sys.path:  # bench scripts import their shared helpers (bench/machine.py)
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    return _bench().run_load(root, requests=12, concurrency=6, rounds=3, max_tokens=8, burst=10, n_prompts=4,
                             overload_tokens=24)  # fmt: skip


def test_no_failures_and_latency_percentiles_reported(result):
    ld = result["load"]
    assert ld["requests"] == 36 and ld["failed"] == 0, ld["errors"]
    for k in ("ttft", "tpot"):
        p50, p99 = ld[f"{k}_p50_ms"], ld[f"{k}_p99_ms"]
        assert math.isfinite(p50) and math.isfinite(p99) and 0 <= p50 <= p99, (k, p50, p99)
    assert ld["health_after"] == 200


def test_goodput_under_the_slos(result):
    g = result["load"]["goodput"]
    assert g["ttft_slo_ms"] == result["slo"]["ttft_ms"] and g["tpot_slo_ms"] == result["slo"]["tpot_ms"]
    assert g["requests"] == 36 and g["slo_attainment"] >= 0.8, g  # tiny models: almost all within 2 s / 200 ms
    assert 0 < g["goodput_rps"] <= g["throughput_rps"]


def test_greedy_outputs_under_concurrency_equal_single_requests(result):
    ld = result["load"]
    assert ld["greedy_equal_to_single_request"], ld["mismatched"]


def test_memory_is_flat_across_rounds(result):
    ld = result["load"]
    assert len(ld["rss_mb_after_each_round"]) == 3 and ld["rss_samples"] > 3
    assert ld["rss_growth_mb"] < 48, ld["rss_mb_after_each_round"]  # a leak per request would grow every round


def test_overload_answers_429_with_retry_after_instead_of_timing_out(result):
    ov = result["overload"]
    assert ov["other"] == [] and ov["timeouts"] == 0, ov
    assert ov["ok"] >= 1 and ov["rejected_429"] >= 1 and ov["ok"] + ov["rejected_429"] == ov["burst"]
    assert ov["retry_after"] == ["2"] and ov["rejected_json_errors"]
    assert ov["rejected_p99_ms"] < 5000, "a 429 must come back at once, not after waiting for a slot"
    assert ov["served_after_burst"]
