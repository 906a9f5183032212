"""The ``serve`` stage: calibrate the routers on held-out text, then start the server on a free loopback port, send
a few requests through the official openai client and write what came back (``<run>/serve/``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from serving.api import cost_router as cr
from serving.api import router as rt
from serving.api.backend import load_backend
from serving.api.config import ServeConfig
from serving.api.server import serve_in_background
from serving.measure.requests import build_requests
from tokenwise.config import load_section
from tokenwise.rundir import RunDir, hash_obj, read_json, sha256_file, write_json


def heldout_samples(
    run_dir: str, n: int, prompt_bytes: int, reference_bytes: int, seed: int = 1
) -> list[tuple[str, str]]:
    """(prompt, reference) pairs from held-out documents of the run, balanced over (language, domain) strata.

    The same stratified sampler as the measurement's request set (:func:`serving.measure.requests.build_requests`),
    with its own seed, so the router is calibrated on the traffic mix it will route rather than on the first shards.
    """
    return [s[:2] for s in heldout_labeled(run_dir, n, prompt_bytes, reference_bytes, seed)]


def heldout_labeled(
    run_dir: str, n: int, prompt_bytes: int, reference_bytes: int, seed: int = 1
) -> list[tuple[str, str, str, str]]:
    """(prompt, reference, language, domain) of :func:`heldout_samples` (the cost routers calibrate per cell)."""
    root = Path(run_dir)
    if not any((root / d).glob("shard-*.parquet") for d in ("curated", "corpus")):
        raise FileNotFoundError(
            f"{run_dir}: no curated/ or corpus/ shards to calibrate on; run the corpus stage first"
        )
    reqs = build_requests(run_dir, n, prompt_bytes, reference_bytes, seed=seed)
    return [(r["prompt"], r["reference"], cr.request_language(r["language"], r["domain"]), r["domain"]) for r in reqs]


def split_text(text: str, prompt_bytes: int, reference_bytes: int) -> tuple[str, str] | None:
    """Cut a document into a prompt and its reference continuation at UTF-8 character boundaries."""
    raw = text.encode("utf-8")
    if len(raw) < prompt_bytes + reference_bytes // 2:
        return None
    prompt = raw[:prompt_bytes].decode("utf-8", errors="ignore")
    cut = len(prompt.encode("utf-8"))
    reference = raw[cut : cut + reference_bytes].decode("utf-8", errors="ignore")
    return (prompt, reference) if prompt.strip() and reference.strip() else None


def calibration_report(
    records: list[dict], prices: list[tuple[float, float]], router_cfg: Any, names: list[str],
    paths: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Thresholds for every strategy at the configured budget, with curves and APGR, as written to router.json."""


    budget = {"max_escalation": router_cfg.budget_max_escalation, "min_quality": router_cfg.budget_min_quality}
    out: dict[str, Any] = {"models": names, "n_records": len(records), "budget": budget}
    paths = paths or [""] * len(names)
    cost_idx = _subchain(names, router_cfg.cost_models)
    cost = cost_report(sub_records(records, cost_idx), [prices[i] for i in cost_idx],
                       router_cfg.budget_min_quality or 0.95, [names[i] for i in cost_idx],
                       [paths[i] for i in cost_idx])  # fmt: skip
    idx = _subchain(names, router_cfg.cascade_models)
    records, prices, names = sub_records(records, idx), [prices[i] for i in idx], [names[i] for i in idx]
    out["cascade_models"] = names
    conf = router_cfg.confidence
    scores = rt.cascade_scores(records, conf)
    cal = rt.calibrate(records, scores, prices, "cascade", **budget)
    pts = rt.curve(records, scores, prices)
    out["cascade"] = {
        "threshold": cal.threshold,
        "confidence": conf,
        "preview_tokens": records[0]["preview_tokens"] if records else router_cfg.preview_tokens,
        "met": cal.met,
        "point": asdict(cal.point),
        "apgr": rt.apgr(pts),
        "curve": [asdict(p) for p in pts],
    }
    model, oof = rt.fit_learned(records)
    lscores = rt.learned_scores(records, model, len(names))
    lscores[:, 0] = oof
    lcal = rt.calibrate(records, lscores, prices, "learned", **budget)
    lpts = rt.curve(records, lscores, prices)
    out["learned"] = {
        "threshold": lcal.threshold,
        "met": lcal.met,
        "point": asdict(lcal.point),
        "apgr": rt.apgr(lpts),
        "curve": [asdict(p) for p in lpts],
        "model": asdict(model),
        "features": list(rt.FEATURES),
    }
    out["cost"] = cost
    return out


def _subchain(names: list[str], want: list[str] | None) -> list[int]:
    idx = [i for i, n in enumerate(names) if want is None or n in want]
    return idx if len(idx) >= 2 else list(range(len(names)))


def sub_records(records: list[dict], idx: list[int]) -> list[dict]:
    """Calibration records restricted to the models at ``idx`` (per-model lists sliced, the rest shared)."""
    per_model = ("bits", "prompt_tokens", "reference_tokens")
    out = []
    for r in records:
        s = {**r, **{k: [r[k][i] for i in idx] for k in per_model if k in r}}
        s["scores"] = {k: [v[i] for i in idx] for k, v in r["scores"].items() if v}
        out.append(s)
    return out


def cost_report(records: list[dict], prices: list[tuple[float, float]], budget: float, names: list[str],
                paths: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The cost routers' calibration (table + floors on every record, what serving uses) and, for the report, the
    comparison with price-per-token, always-large and always-small fitted on half of each language x domain and
    measured on the other half."""
    table = cr.fit_table(records, names, prices, paths)
    floors = {mode: cr.calibrate_floor(records, table, budget, mode) for mode in cr.MODES}
    out: dict[str, Any] = {"table": table, "floors": floors, "budget_min_quality": budget}
    cal, test = cr.split_records(records)
    if test:
        held = cr.compare(cal, test, names, prices, budget, paths)
        out["held_out"] = {k: v for k, v in held.items() if k not in ("table", "decisions")}
    return out


def calibrate_run(config_path: str, run_dir: str) -> tuple[str, str]:
    """Collect calibration records with the configured models, calibrate both routers, write serve/router.json."""
    cfg = load_section(config_path, "serve", ServeConfig).resolved(run_dir)
    chain = cfg.by_cost()
    r = cfg.router
    unknown = sorted((set(r.cascade_models or []) | set(r.cost_models or [])) - {m.name for m in chain})
    if unknown:
        raise ValueError(f"{config_path}: serve.router cascade_models/cost_models name {unknown}, which are not in "
                         f"serve.models {[m.name for m in chain]}")  # fmt: skip
    samples = heldout_labeled(run_dir, r.calibration_prompts, r.prompt_bytes, r.reference_bytes)
    if len(samples) < 4:
        raise ValueError(
            f"{run_dir}: only {len(samples)} held-out documents long enough to calibrate on; "
            f"lower serve.router.prompt_bytes/reference_bytes or add data"
        )
    backends = [load_backend(m) for m in chain]
    records = rt.collect_records(backends, samples, r.preview_tokens, answer_tokens=cfg.limits.default_max_tokens)
    prices = [(m.price_input_per_1m, m.price_output_per_1m) for m in chain]
    report = calibration_report(records, prices, r, [m.name for m in chain], [m.path for m in chain])
    path = RunDir(run_dir).stage("serve", "router.json")
    write_json(path, report)
    c, lr = report["cascade"], report["learned"]
    return path, (
        f"{len(records)} requests: cascade t={c['threshold']:.3f} escalates {c['point']['escalation_rate']:.0%} at "
        f"{c['point']['quality_share']:.1%} of large quality (APGR {c['apgr']:.2f}); learned escalates "
        f"{lr['point']['escalation_rate']:.0%} at {lr['point']['quality_share']:.1%} (APGR {lr['apgr']:.2f})"
        + _cost_summary(report["cost"])
    )


def _cost_summary(cost: dict) -> str:
    held = cost.get("held_out")
    if not held:
        return f"; cost router floor {cost['floors']['per_request']['floor']:.3f} (no held-out half)"
    g = held["goals"]
    return (f"; cost router {100 * g['overall_cost_reduction_vs_large']:.0f}% below always-large at "
            f"{100 * g['overall_quality_share']:.1f}% of its quality on the held-out half, non-English "
            f"{g['non_english_cost_vs_price_per_token'] or float('nan'):.2f}x the price-per-token router's cost")


def run_serve_stage(config_path: str, run_dir: str) -> str:
    """Demo stage: calibrate routers, then serve on a free loopback port and answer a few requests via openai."""
    cfg = load_section(config_path, "serve", ServeConfig)
    if not cfg.models:
        return "skipped: serve.models is empty"
    rd = RunDir(run_dir)
    resolved = cfg.resolved(run_dir)
    missing = [m.path for m in resolved.models if not Path(m.path, "config.json").is_file()]
    if missing:
        return f"skipped: no model at {', '.join(missing)} (run the finetune stage first)"
    inputs = hash_obj(
        [cfg.model_dump(mode="json"), [sha256_file(Path(m.path, "config.json")) for m in resolved.models]]
    )
    if rd.is_done("serve", inputs):
        return f"up to date: {rd.stage('serve', 'router.json')}"
    path, summary = calibrate_run(config_path, run_dir)
    smoke = smoke_test(resolved, run_dir, read_json(path))
    write_json(rd.stage("serve", "smoke.json"), smoke)
    rd.mark_done("serve", inputs, {"calibration": summary})
    return f"{summary}; served {len(smoke['responses'])} requests via openai client ({path})"


def smoke_test(cfg: Any, run_dir: str, calibration: dict | None = None) -> dict[str, Any]:
    """Start the server on 127.0.0.1, send a completion, a chat and a routed request, stop it; return the answers."""
    from openai import OpenAI  # heavy: deferred until used


    cfg = cfg.model_copy(update={"api_key_env": None})
    with serve_in_background(cfg, calibration=calibration, run_dir=run_dir) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        small = cfg.by_cost()[0].name
        responses = [
            client.completions.create(model=small, prompt="def main():\n", max_tokens=16, temperature=0),
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "Hello"}], max_tokens=16
            ),
            client.completions.create(model="router-learned", prompt="import os\n", max_tokens=16, temperature=0),
            client.completions.create(model="router-cost", prompt="Datei nicht gefunden: ", max_tokens=16,
                                      temperature=0, extra_body={"metadata": {"language": "de", "domain": "ui"}}),
        ]  # fmt: skip
    return {"url": srv.url, "responses": [r.model_dump(mode="json") for r in responses]}
