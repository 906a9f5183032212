"""Routing benchmark: cost–quality curves and APGR of the cascade (three confidence scores) and the learned router,
against always-large, always-small, random and oracle routing, on the same held-out requests.

    .venv/bin/python bench/route.py [--small] [--run runs/demo]

With ``--run`` and trained models at ``<run>/models/{draft,target}`` it routes those on the run's held-out documents;
otherwise it trains a small and a large tiny Llama on Python stdlib text for a few hundred steps and routes on
held-out stdlib files. Thresholds are calibrated on the first half of the requests for a budget (>= 95% of the large
model's quality) and evaluated on the second half. Writes bench/results/route.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.rundir import write_json  # noqa: E402
from serving import router as rt  # noqa: E402
from serving.backend import load_backend  # noqa: E402
from serving.config import ModelSpec  # noqa: E402

PRICES = [(0.05, 0.10), (0.50, 1.50)]  # USD per 1M (input, output): small, large — as in configs/demo.yaml
QUALITY_FLOOR = 0.95


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__}


def stdlib_samples(n: int, prompt_bytes: int, ref_bytes: int) -> list[tuple[str, str]]:
    from serving.commands_serve import split_text
    from serving.tiny import stdlib_texts

    out = []
    for text in stdlib_texts(400, max_chars=20000, skip=120):  # files the tiny models never trained on
        for start in range(0, len(text) - prompt_bytes - ref_bytes, 1500):
            pair = split_text(text[start:], prompt_bytes, ref_bytes)
            if pair:
                out.append(pair)
            if len(out) >= n:
                return out
    return out


def models(args: argparse.Namespace, tmp: Path) -> tuple[list[ModelSpec], list[tuple[str, str]], str]:
    if args.run and Path(args.run, "models", "target", "config.json").is_file():
        from serving.commands_serve import heldout_samples

        specs = [ModelSpec(name=n, path=str(Path(args.run, "models", n))) for n in ("draft", "target")]
        return specs, heldout_samples(args.run, args.n, 256, 256), f"run {args.run}"
    from serving.tiny import tiny_pair

    t0 = time.perf_counter()
    steps = (40, 120) if args.small else (80, 300)
    d = tiny_pair(tmp, train=True, steps=steps)
    specs = [ModelSpec(name="small", path=str(d["small"])), ModelSpec(name="large", path=str(d["large"]))]
    src = f"tiny Llamas trained on stdlib text ({steps[0]}/{steps[1]} steps, {time.perf_counter() - t0:.0f}s)"
    return specs, stdlib_samples(args.n, 192, 192), src


def strategy_scores(cal: list[dict], test: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per strategy: (scores on the calibration half, scores on the test half), each [n, 1]."""
    out = {f"cascade_{k}": (rt.cascade_scores(cal, k), rt.cascade_scores(test, k)) for k in rt.CONFIDENCES}
    model, oof = rt.fit_learned(cal)
    out["learned"] = (oof[:, None], model.predict(np.array([r["features"] for r in test]))[:, None])
    rng = np.random.default_rng(0)
    out["random"] = (rng.random((len(cal), 1)), rng.random((len(test), 1)))

    def gap(rs: list[dict]) -> np.ndarray:
        return -np.array([(r["bits"][0] - r["bits"][1]) / r["n_bytes"] for r in rs])[:, None]

    out["oracle"] = (gap(cal), gap(test))
    return out


def small_share_at_floor(points: list[rt.Point], floor: float) -> float:
    """Largest share answered by the cheap model with quality >= floor x large (on this set's curve)."""
    ok = [1 - p.escalation_rate for p in points if p.quality_share >= floor - 1e-12]
    return max(ok) if ok else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="fewer requests and training steps (about a minute)")
    ap.add_argument("--run", default=None, help="run directory with models/draft and models/target")
    ap.add_argument("--n", type=int, default=None, help="requests (half calibrate, half test)")
    ap.add_argument("--preview", type=int, default=8, help="cascade preview tokens")
    args = ap.parse_args()
    args.n = args.n or (60 if args.small else 160)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        specs, samples, source = models(args, Path(tmp))
        backends = [load_backend(s) for s in specs]
        t0 = time.perf_counter()
        records = rt.collect_records(backends, samples, preview_tokens=args.preview, answer_tokens=32)
        t_collect = time.perf_counter() - t0
    half = len(records) // 2
    cal, test = records[:half], records[half:]
    result: dict = {
        "machine": machine(),
        "source": source,
        "models": [s.name for s in specs],
        "prices_per_1m": PRICES,
        "requests": {"calibration": len(cal), "test": len(test)},
        "quality": "bytes per bit of the reference continuation under the answering model (higher is better)",
        "quality_floor": QUALITY_FLOOR,
        "collect_seconds": t_collect,
        "strategies": {},
    }
    always = {
        "always_small": rt.evaluate(test, np.full((len(test), 1), np.inf), 0.0, PRICES),
        "always_large": rt.evaluate(test, np.full((len(test), 1), -np.inf), 0.0, PRICES),
    }
    result["baselines"] = {k: asdict(v) for k, v in always.items()}
    large_cost = always["always_large"].cost_usd
    print(f"{source}; {len(cal)} calibration + {len(test)} test requests; records in {t_collect:.1f}s")
    print(
        f"always-large bpb {always['always_large'].bpb:.3f}  always-small bpb {always['always_small'].bpb:.3f} "
        f"(small = {always['always_small'].quality_share:.1%} of large quality)"
    )
    print(
        f"{'strategy':24} {'APGR':>6} {'small@>=95%':>12} {'calib: esc':>10} {'test: esc':>9} {'quality':>8} "
        f"{'cost vs large':>13}"
    )
    for name, (s_cal, s_test) in strategy_scores(cal, test).items():
        c = rt.calibrate(cal, s_cal, PRICES, name, max_escalation=None, min_quality=QUALITY_FLOOR)
        on_test = rt.evaluate(test, s_test, c.threshold, PRICES)
        pts = rt.curve(test, s_test, PRICES)
        entry = {
            "apgr": rt.apgr(pts),
            "small_share_at_floor_test_curve": small_share_at_floor(pts, QUALITY_FLOOR),
            "calibrated": {
                "threshold": c.threshold,
                "met_on_calibration": c.met,
                "calibration": asdict(c.point),
                "test": asdict(on_test),
            },
            "cost_ratio_vs_always_large": on_test.cost_usd / large_cost if large_cost else None,
            "curve": [asdict(p) for p in pts],
        }
        result["strategies"][name] = entry
        print(
            f"{name:24} {entry['apgr']:6.3f} {entry['small_share_at_floor_test_curve']:12.1%} "
            f"{c.point.escalation_rate:10.1%} {on_test.escalation_rate:9.1%} {on_test.quality_share:8.1%} "
            f"{entry['cost_ratio_vs_always_large']:13.3f}"
        )
    result["total_seconds"] = time.perf_counter() - t_all
    out = Path(__file__).resolve().parent / "results" / "route.json"
    write_json(out, result)
    print(f"wrote {out} ({result['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
