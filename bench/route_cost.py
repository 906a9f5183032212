"""Cost-per-request routing between two real models whose tokenizers differ (SmolLM2-135M-Instruct, English-centric
49k vocabulary; Gemma 3 270M, multilingual 262k): the cost-per-request router vs a price-per-token router vs
always-large vs always-small, per language, on the same held-out requests.

    flock /work/wt/bench.lock nice -n 5 .venv/bin/python bench/route_cost.py --models RUN/models [--run runs/demo]

Requests: held-out (prompt, continuation) pairs of the run's curated documents, balanced over language x domain (the
demo: gettext UI strings in 14 languages + English UI, code and docs). Per request and model: the prompt's tokens and
the continuation's tokens in that model's own tokenizer, and the bits of the continuation under that model (quality =
bytes per bit). Half of each (language, domain) calibrates (length ratios, quality per cell, each router's quality
floor for >= 95% of always-large's quality), the other half is the test set every figure below comes from. A request
is billed its prompt plus the continuation, each in the answering model's own tokens, at its prices: the same text
for every model, so cost differences are tokenizer x price. Writes bench/results/route_cost.json (and, with
``--save-records``, the per-request records to re-analyse with ``--records`` without running the models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.api import cost_router as cr  # noqa: E402
from serving.api import router as rt  # noqa: E402
from serving.api.backend import load_backend  # noqa: E402
from serving.api.config import ModelSpec  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

# USD per 1M (input, output) tokens, small first: SmolLM2 at half Gemma's price per token (135M vs 268M parameters;
# it decodes ~1.75x faster on this CPU), Gemma as configs/demo.yaml prices it
PRICES = {"smollm2": (0.25, 0.75), "gemma": (0.50, 1.50)}
BUDGET = 0.95  # each router keeps >= 95% of always-large's quality on the calibration half

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def collect(args: argparse.Namespace) -> tuple[list[dict], float]:
    from serving.measure.requests import build_requests

    reqs = build_requests(args.run, args.n, args.prompt_bytes, args.reference_bytes, seed=7)
    samples = [(r["prompt"], r["reference"], cr.request_language(r["language"], r["domain"]), r["domain"])
               for r in reqs]  # fmt: skip
    backends = [load_backend(ModelSpec(name=n, path=str(Path(args.models, n)), max_context=args.max_context))
                for n in PRICES]  # fmt: skip
    t0 = time.perf_counter()
    records = rt.collect_records(backends, samples, preview_tokens=-1)
    for r, q in zip(records, reqs, strict=True):
        r["request_id"] = q["request_id"]
    return records, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run dir with curated/ shards (held-out requests)")
    ap.add_argument("--models", default="runs/demo/models", help="dir holding smollm2/ and gemma/ (HF dirs)")
    ap.add_argument("--n", type=int, default=192, help="requests (half calibrate, half test, per language x domain)")
    ap.add_argument("--prompt-bytes", type=int, default=120)
    ap.add_argument("--reference-bytes", type=int, default=80)
    ap.add_argument("--max-context", type=int, default=1024, help="tokens per model: prompt and continuation halves")
    ap.add_argument("--out", default="route_cost.json", help="result file name under bench/results/")
    ap.add_argument("--save-records", default=None, help="also write the per-request records here")
    ap.add_argument("--records", default=None, help="analyse records saved by --save-records instead of collecting")
    args = ap.parse_args()
    t_all = time.perf_counter()
    if args.records:
        saved = json.loads(Path(args.records).read_text())
        records, t_collect = saved["records"], saved["collect_seconds"]
    else:
        records, t_collect = collect(args)
        if args.save_records:
            write_json(args.save_records, {"records": records, "collect_seconds": t_collect})
    names = list(PRICES)
    cal, test = cr.split_records(records, 0.5, seed=0)
    res = cr.compare(cal, test, names, [PRICES[n] for n in names], BUDGET)
    premium = {}
    for lang in sorted({r["language"] for r in records}):
        rs = [r for r in records if r["language"] == lang]
        premium[lang] = {"tokens_small_over_large": sum(r["prompt_tokens"][0] + r["reference_tokens"][0] for r in rs)
                         / max(1, sum(r["prompt_tokens"][1] + r["reference_tokens"][1] for r in rs)),
                         "requests": len(rs)}  # fmt: skip
    result = {
        "machine": machine(),
        "models": {n: {"path": str(Path(args.models, n)), "price_per_1m": PRICES[n]} for n in names},
        "source": f"run {args.run}: held-out curated documents, {args.prompt_bytes}+{args.reference_bytes} bytes",
        "quality": "bytes per bit of the held-out continuation under the answering model (higher is better)",
        "billing": "prompt + continuation, each in the answering model's own tokens, at its prices",
        "budget_min_quality": BUDGET,
        "token_premium": premium,
        "collect_seconds": t_collect,
        **{k: v for k, v in res.items() if k != "decisions"},
        "decisions_test": res["decisions"],
    }
    g = res["groups"]
    print(f"{len(cal)} calibration + {len(test)} test requests; records in {t_collect:.0f}s; floors "
          + ", ".join(f"{m} {f['floor']:.3f}" for m, f in res["floors"].items()))  # fmt: skip
    print(f"{'group':14} " + " ".join(f"{s[:26]:>26}" for s in g["overall"]))
    for name, row in g.items():
        cells = [f"${v['cost_usd'] * 1e3:8.4f}m q{v['quality_share']:6.1%} s{v['small_share']:5.0%}"
                 for v in row.values()]  # fmt: skip
        print(f"{name:14} " + " ".join(f"{c:>26}" for c in cells))
    print("goals:", json.dumps(res["goals"]))
    result["total_seconds"] = time.perf_counter() - t_all
    out = Path(__file__).resolve().parent / "results" / args.out
    write_json(out, result)
    print(f"wrote {out} ({result['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
