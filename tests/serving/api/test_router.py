"""Routing: router names, budget calibration (escalation cap, quality floor), APGR, the learned router, and the cascade
on real tiny models deciding exactly as calibration predicted; the serve demo stage end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.api import router as rt
from serving.api.backend import GenParams, load_backend
from serving.api.config import RouterSpec, ServeConfig
from serving.decode.tiny import stdlib_texts

PRICES = [(0.1, 0.2), (1.0, 2.0)]


def synthetic(n: int = 200, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Records where the small model is worse by a per-request gap, and a noisy score that tracks the gap."""
    rng = np.random.default_rng(seed)
    n_bytes = rng.integers(100, 300, n)
    bpb_large = rng.uniform(1.0, 2.0, n)
    gap = rng.exponential(0.4, n)
    bits = np.stack([(bpb_large + gap) * n_bytes, bpb_large * n_bytes], 1)
    recs = [
        {"bits": b.tolist(), "n_bytes": int(nb), "prompt_tokens": [50, 60], "preview_tokens": 8, "answer_tokens": 32}
        for b, nb in zip(bits, n_bytes, strict=True)
    ]
    score = (-gap + rng.normal(0, 0.15, n))[:, None]
    for r, sc, g in zip(recs, score[:, 0], gap, strict=True):
        r["scores"] = {k: [float(sc), 0.0] for k in rt.CONFIDENCES}
        r["features"] = [float(g + rng.normal(0, 0.3)), *rng.normal(size=7).tolist()]
    return recs, score


def test_parse_router_model():
    assert rt.parse_router_model("router-cascade--1.5") == ("cascade", -1.5)
    assert rt.parse_router_model("router-learned-0.4") == ("learned", 0.4)
    assert rt.parse_router_model("router-learned") == ("learned", None)
    assert rt.parse_router_model("small") is None
    with pytest.raises(rt.RouterNameError, match="unknown router"):
        rt.parse_router_model("router-mf-0.1")


@pytest.mark.parametrize("cap", [0.1, 0.25, 0.5])
def test_escalation_budget_is_hit(cap):
    recs, score = synthetic()
    cal = rt.calibrate(recs, score, PRICES, max_escalation=cap, min_quality=None)
    assert cal.met and cal.point.escalation_rate <= cap
    assert cal.point.escalation_rate >= cap - 1 / len(recs)  # uses the whole budget (distinct scores)
    assert np.mean(score[:, 0] < cal.threshold) == pytest.approx(cal.point.escalation_rate)


@pytest.mark.parametrize("floor", [0.85, 0.9, 0.95, 0.99])
def test_quality_budget_is_hit_with_fewest_escalations(floor):
    recs, score = synthetic()
    cal = rt.calibrate(recs, score, PRICES, min_quality=floor)
    assert cal.met and cal.point.quality_share >= floor
    cheaper = [p for p in rt.curve(recs, score, PRICES) if p.escalation_rate < cal.point.escalation_rate]
    assert all(p.quality_share < floor for p in cheaper)


def test_both_budgets_and_infeasible_budget_is_flagged():
    recs, score = synthetic()
    ok = rt.calibrate(recs, score, PRICES, max_escalation=0.6, min_quality=0.9)
    assert ok.met and ok.point.escalation_rate <= 0.6 and ok.point.quality_share >= 0.9
    bad = rt.calibrate(recs, score, PRICES, max_escalation=0.05, min_quality=0.999)
    assert not bad.met and bad.point.escalation_rate <= 0.05
    with pytest.raises(ValueError, match="give a budget"):
        rt.calibrate(recs, score, PRICES, max_escalation=None, min_quality=None)


def test_apgr_oracle_beats_random_and_random_is_half():
    recs, score = synthetic(400)
    gap = np.array([r["bits"][0] - r["bits"][1] for r in recs]) / np.array([r["n_bytes"] for r in recs])
    oracle = rt.apgr(rt.curve(recs, -gap[:, None], PRICES))
    noisy = rt.apgr(rt.curve(recs, score, PRICES))
    rand = rt.apgr(rt.curve(recs, np.random.default_rng(1).normal(size=(len(recs), 1)), PRICES))
    assert oracle > noisy > rand and 0.4 < rand < 0.6 and oracle > 0.6


def test_answered_by_three_model_chain():
    scores = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.1]])
    assert rt.answered_by(scores, 0.5).tolist() == [0, 1, 2]


def test_learned_router_fits_separable_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] - 2 * x[:, 2] > 0).astype(float)
    model = rt.LogisticModel.fit(x, y)
    assert np.mean((model.predict(x) > 0.5) == y) > 0.95


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def chain(tiny):
    cfg = ServeConfig(
        models=[{"name": "small", "path": str(tiny["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
                {"name": "large", "path": str(tiny["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0}]
    )  # fmt: skip
    return {m.name: load_backend(m) for m in cfg.models}


@pytest.fixture(scope="module")
def records(chain):
    texts = stdlib_texts(16, skip=100)
    samples = [(t[:120], t[120:240]) for t in texts]
    return samples, rt.collect_records([chain["small"], chain["large"]], samples, preview_tokens=6, answer_tokens=6)


def test_cascade_on_real_models_hits_escalation_budget(chain, records):
    samples, recs = records
    scores = rt.cascade_scores(recs, "mean_logprob")
    cal = rt.calibrate(recs, scores, PRICES, max_escalation=0.25, min_quality=None)
    router = rt.CascadeRouter(["small", "large"], cal.threshold, "mean_logprob", preview_tokens=6)
    live = [router.start(chain, p, GenParams(max_tokens=6), max_prompt=400) for p, _ in samples]
    escalated = [r.model == "large" for r in live]
    assert np.mean(escalated) == pytest.approx(cal.point.escalation_rate) and np.mean(escalated) <= 0.25
    assert [r.score for r in live if r.model == "small"] == pytest.approx(
        [s for s, e in zip(scores[:, 0], escalated, strict=True) if not e]
    )
    for r in live:
        r.generation.close()


def test_records_measure_reference_bits(chain, records):
    samples, recs = records
    p, ref = samples[0]
    small = chain["small"]
    expected = -small.logprob_sum(small.encode(p), small.encode(ref)) / np.log(2)
    assert recs[0]["bits"][0] == pytest.approx(expected)
    assert recs[0]["n_bytes"] == len(ref.encode("utf-8"))


def test_calibration_report_roundtrip_to_live_learned_router(chain, records):
    from serving.api.stage import calibration_report

    samples, recs = records
    report = json.loads(
        json.dumps(calibration_report(recs, PRICES, RouterSpec(budget_max_escalation=0.5), ["small", "large"]))
    )
    assert report["cascade"]["point"]["escalation_rate"] <= 0.5 and 0 <= report["learned"]["apgr"] <= 1.5
    router = rt.router_from_calibration("learned", ["small", "large"], report, None, "mean_logprob", 8)
    model = rt.LogisticModel(**report["learned"]["model"])
    for p, _ in samples[:6]:
        r = router.start(chain, p, GenParams(max_tokens=2), max_prompt=400)
        expect = model.predict(np.array(rt.prompt_features(p, rt._prompt_bpb(chain["small"], p))))[0]
        assert r.score == pytest.approx(expect)
        assert r.model == ("small" if expect >= router.threshold else "large")
        r.generation.close()


def _heldout_run(root, n: int = 12):
    from tokenwise.documents import CORPUS_SCHEMA
    from tokenwise.splits import is_heldout

    rows, i = [], 0
    texts = stdlib_texts(40)
    while len(rows) < n:
        doc_id = f"doc-{i}"
        if is_heldout(doc_id, None):
            rows.append(
                {
                    "id": doc_id,
                    "text": texts[len(rows) % len(texts)],
                    "source": "stdlib",
                    "lang": "en",
                    "domain": "code",
                    "unit_id": None,
                }
            )
        i += 1
    (root / "curated").mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA)
    pq.write_table(table, root / "curated" / "shard-00000.parquet")


@pytest.mark.parametrize("batching", [False, True])
def test_serve_demo_stage_calibrates_and_serves(tmp_path, tiny, batching):
    from serving.api.stage import run_serve_stage

    run = tmp_path / "run"
    _heldout_run(run)
    cfg = tmp_path / "c.yaml"
    batch = ", batching: {enabled: true, block_size: 8}" if batching else ""  # as configs/demo.yaml serves them
    cfg.write_text(
        "serve:\n  models:\n"
        f"    - {{name: small, path: '{tiny['small']}', price_input_per_1m: 0.1, price_output_per_1m: 0.2{batch}}}\n"
        f"    - {{name: large, path: '{tiny['large']}', price_input_per_1m: 1.0, price_output_per_1m: 2.0{batch}}}\n"
        "  router: {calibration_prompts: 8, prompt_bytes: 128, reference_bytes: 128, preview_tokens: 4,\n"
        "           calibration_file: '{run}/serve/router.json', budget_max_escalation: 0.5}\n"
        "  limits: {default_max_tokens: 8, max_tokens: 16}\n"
    )
    summary = run_serve_stage(str(cfg), str(run))
    assert "cascade" in summary and "via openai client" in summary
    report = json.loads((run / "serve" / "router.json").read_text())
    assert report["n_records"] == 8 and report["cascade"]["point"]["escalation_rate"] <= 0.5
    smoke = json.loads((run / "serve" / "smoke.json").read_text())
    assert [r["model"] in ("small", "large") for r in smoke["responses"]] == [True] * 4
    assert set(report["cost"]["table"]["models"]) == {"small", "large"}  # the cost routers' calibration
    assert smoke["responses"][3]["metrics"]["routing"]["router"] == "cost"  # router-cost says why
    assert smoke["responses"][3]["metrics"]["routing"]["reason"]
    assert run_serve_stage(str(cfg), str(run)).startswith("up to date")


def test_cost_quality_summary_calibrates_on_one_half_and_tests_on_the_other():
    recs, _ = synthetic(200)
    out = rt.cost_quality(recs, PRICES, floor=0.9)
    assert out["requests"] == {"calibration": 100, "test": 100}
    s = out["strategies"]
    assert set(s) == {
        "cascade_mean_logprob",
        "cascade_neg_entropy",
        "cascade_min_logprob",
        "learned",
        "random",
        "oracle",
    }
    assert s["oracle"]["apgr"] > s["random"]["apgr"]
    assert s["oracle"]["calibration"]["quality_share"] >= 0.9 and s["oracle"]["met_on_calibration"]
    assert s["oracle"]["small_share_at_floor"] >= 1 - s["oracle"]["test"]["escalation_rate"] - 0.2
    assert out["baselines"]["always_large"]["quality_share"] == pytest.approx(1.0)


def test_cli_serve_group(tmp_path):
    from typer.testing import CliRunner

    from tokenwise.cli import app

    help_out = CliRunner().invoke(app, ["serve", "--help"])
    assert help_out.exit_code == 0 and "calibrate" in help_out.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("serve:\n  port: 0\n")
    r = CliRunner().invoke(app, ["serve", "--config", str(cfg), "--run", str(tmp_path)])
    assert r.exit_code != 0 and "serve.models is empty" in r.output
