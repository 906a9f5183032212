"""Routing benchmark: cost–quality curves and APGR of the cascade (three confidence scores) and the learned router,
against always-large, always-small, random and oracle routing, on the same held-out requests.

    .venv/bin/python bench/route.py [--small] [--run runs/demo]

With ``--run`` and models at ``<run>/models/<--small-model>`` and ``<run>/models/<--large>`` (the demo: ``--large
gemma-compact --out route_gemma.json``) it routes those on the run's held-out documents;
otherwise it trains a small and a large tiny Llama on Python stdlib text for a few hundred steps and routes on
held-out stdlib files. Thresholds are calibrated on the first half of the requests for a budget (>= 95% of the large
model's quality) and evaluated on the second half. Writes bench/results/route.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.api import router as rt  # noqa: E402
from serving.api.backend import load_backend  # noqa: E402
from serving.api.config import ModelSpec  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

PRICES = [(0.05, 0.10), (0.50, 1.50)]  # USD per 1M (input, output): small, large — as in configs/demo.yaml
QUALITY_FLOOR = 0.95  # goal: >= 50% of requests answered by the small model at >= 95% of the large's quality


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def stdlib_samples(n: int, prompt_bytes: int, ref_bytes: int) -> list[tuple[str, str]]:
    from serving.api.stage import split_text
    from serving.decode.tiny import stdlib_texts

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
    if args.run and Path(args.run, "models", args.large, "config.json").is_file():
        from serving.api.stage import heldout_samples

        specs = [ModelSpec(name=n, path=str(Path(args.run, "models", n))) for n in (args.small_model, args.large)]
        return specs, heldout_samples(args.run, args.n, 256, 256), f"run {args.run}"
    from serving.decode.tiny import tiny_pair

    t0 = time.perf_counter()
    steps = (40, 120) if args.small else (80, 300)
    d = tiny_pair(tmp, train=True, steps=steps)
    specs = [ModelSpec(name="small", path=str(d["small"])), ModelSpec(name="large", path=str(d["large"]))]
    src = f"tiny Llamas trained on stdlib text ({steps[0]}/{steps[1]} steps, {time.perf_counter() - t0:.0f}s)"
    return specs, stdlib_samples(args.n, 192, 192), src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="fewer requests and training steps (about a minute)")
    ap.add_argument("--run", default=None, help="run directory with models/draft and models/target")
    ap.add_argument("--n", type=int, default=None, help="requests (half calibrate, half test)")
    ap.add_argument("--preview", type=int, default=8, help="cascade preview tokens")
    ap.add_argument("--small-model", default="draft", help="the run's small model (models/<name>)")
    ap.add_argument("--large", default="target", help="the run's large model, e.g. gemma-compact")
    ap.add_argument("--out", default="route.json", help="result file name under bench/results/")
    ap.add_argument("--save-records", default=None, help="also write the collected per-request records here")
    ap.add_argument("--records", default=None, help="analyse records saved by --save-records instead of collecting")
    args = ap.parse_args()
    args.n = args.n or (60 if args.small else 160)
    t_all = time.perf_counter()
    if args.records:  # re-analyse saved records without retraining or re-running the models
        saved = json.loads(Path(args.records).read_text())
        specs, source, records, t_collect = (
            saved["models"],
            saved["source"],
            saved["records"],
            saved["collect_seconds"],
        )
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model_specs, samples, source = models(args, Path(tmp))
            backends = [load_backend(s) for s in model_specs]
            t0 = time.perf_counter()
            records = rt.collect_records(backends, samples, preview_tokens=args.preview, answer_tokens=32)
            t_collect = time.perf_counter() - t0
        specs = [s.name for s in model_specs]
        if args.save_records:
            write_json(
                args.save_records,
                {"models": specs, "source": source, "records": records, "collect_seconds": t_collect},
            )
    routing = rt.cost_quality(records, PRICES, QUALITY_FLOOR)
    result = {
        "machine": machine(),
        "source": source,
        "models": specs,
        "prices_per_1m": PRICES,
        "quality": "bytes per bit of the reference continuation under the answering model (higher is better)",
        "preview_tokens": args.preview,
        "collect_seconds": t_collect,
        **routing,
    }
    base = routing["baselines"]
    n_cal, n_test = routing["requests"]["calibration"], routing["requests"]["test"]
    print(f"{source}; {n_cal} calibration + {n_test} test requests; records in {t_collect:.1f}s")
    print(
        f"always-large bpb {base['always_large']['bpb']:.3f}  always-small bpb {base['always_small']['bpb']:.3f} "
        f"(small = {base['always_small']['quality_share']:.1%} of large quality)"
    )
    print(
        f"{'strategy':22} {'APGR':>6} {'small@>=95%':>11} {'calib esc':>9} {'test esc':>8} {'test quality':>12} "
        f"{'cost/large':>10}"
    )
    for name, e in routing["strategies"].items():
        print(
            f"{name:22} {e['apgr']:6.3f} {e['small_share_at_floor']:11.1%} {e['calibration']['escalation_rate']:9.1%} "
            f"{e['test']['escalation_rate']:8.1%} {e['test']['quality_share']:12.1%} "
            f"{e['cost_ratio_vs_always_large']:10.3f}"
        )
    result["total_seconds"] = time.perf_counter() - t_all
    out = Path(__file__).resolve().parent / "results" / args.out
    write_json(out, result)
    print(f"wrote {out} ({result['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
