"""``tokenwise measure``: replay held-out requests through the real HTTP server, stack by stack, and write the ledger.

Each stack is served by its own server instance (the models it lists, from the ``serve:`` section) and receives the
same requests (greedy, same ``max_tokens``, bounded concurrency): one stack after another, or with ``interleave``
every server up at once and the requests through the stacks in turns. Stacks are listed with the lever each one
adds, in order, starting from the baseline (reference tokenizer, full-precision target only, no routing, no
speculation), so the decomposition measures what each lever is worth on the same requests in the same run.

Outputs under ``<run>/measure/``: ``requests.jsonl``, ``ledger.parquet`` + ``ledger.jsonl``, ``summary.json``,
``summary.md``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serving.api.backend import load_backend
from serving.api.config import ServeConfig, SpeculativeSpec
from serving.api.server import serve_in_background
from serving.measure import aggregate as agg
from serving.measure.config import MeasureConfig, StackSpec
from serving.measure.ledger import add_counterfactuals, write_ledger
from serving.measure.prices import PriceTable
from serving.measure.quality import bits_per_byte, chrf
from serving.measure.replay import iso, replay, warmup_set
from serving.measure.requests import build_requests, read_requests, write_requests
from tokenwise.config import load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, read_json, write_json
from tokenwise.tokenizer_specs import load_tokenizer

log = logging.getLogger(__name__)


def catalog(cfg: MeasureConfig, serve_cfg: Any) -> list[Any]:
    """The models stacks may load: measure.models, else serve.models."""
    return list(cfg.models) or list(serve_cfg.models)


def _serve_config(
    serve_cfg: Any, models: list[Any], stack: StackSpec, run_dir: str, default_threads: int | None = None
) -> Any:

    known = {m.name: m for m in models}
    missing = [n for n in stack.serve_models if n not in known]
    if missing:
        raise ValueError(f"stack {stack.name}: serve_models {missing} are not in the model catalog {sorted(known)}")
    data = serve_cfg.model_dump()
    data["models"] = [known[n].model_dump() for n in stack.serve_models]
    data["port"] = 0
    # every stack sets its server's threads (one process serves them one after another: no stack inherits another's)
    data["threads"] = stack.threads or serve_cfg.threads or default_threads
    return ServeConfig.model_validate(data).resolved(run_dir)


class Scorer:
    """Bits per byte of each request's reference continuation under the model that answered it (same weights)."""

    def __init__(self, models: list[Any]):
        self.specs = {m.name: m for m in models}
        self.backends: dict[str, Any] = {}

    def __call__(self, model: str, prompt: str, reference: str) -> float:

        if model not in self.backends:  # scoring needs the target's log-probs only: no drafter, no calibration
            plain = self.specs[model].model_copy(update={"speculative": SpeculativeSpec()})
            self.backends[model] = load_backend(plain)
        b = self.backends[model]
        if not reference:
            return math.nan
        return bits_per_byte([b.logprob_sum(b.encode(prompt), b.encode(reference))], reference)


def _resolved(serve_cfg: Any, models: list[Any], run_dir: str) -> list[Any]:
    """Catalog models with {run} resolved (via ServeConfig.resolved, which needs >= 2 models)."""
    data = serve_cfg.model_dump()
    data["models"] = [m.model_dump() for m in models]
    return ServeConfig.model_validate(data).resolved(run_dir).models


def baseline_tokenizer(stack: StackSpec, models: list[Any]) -> tuple[Any, str]:
    """The baseline stack's model's tokenizer (it counts every stack's text) and a name for the ledger."""
    known = {m.name: m for m in models}
    if stack.model not in known:
        raise ValueError(
            f"baseline stack {stack.name!r}: model {stack.model!r} is not one catalog model {sorted(known)}; the "
            "baseline answers with one model (no routing), whose tokenizer counts every stack's text"
        )
    spec = known[stack.model]
    path = spec.tokenizer or spec.path
    return load_tokenizer(f"hf:{path}"), f"{spec.name}:{Path(path).name}"


def _rows(stack: StackSpec, results: list[dict], prices: PriceTable, ref_tok: Any, largest: str,
          scorer: Scorer) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for res in results:
        req, fin = res["request"], res["final"] or {}
        usage, m = fin.get("usage") or {}, fin.get("metrics") or {}
        ok = res["error"] is None and bool(usage)
        model = fin.get("model") or res["headers"].get("x-tokenwise-model") or stack.model
        p, c = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        spec_m, routing, timing = m.get("speculative_decoding") or {}, m.get("routing") or {}, m.get("timing") or {}
        spend_c = prices.cost(model, 0, c) if ok else 0.0
        spend_total = m.get("cost_usd", prices.cost(model, p, c) if ok else 0.0)
        ttft = (res["t_first"] - res["t_start"]) * 1e3
        dur = (res["t_end"] - res["t_start"]) * 1e3
        rows.append({
            "request_id": req["request_id"], "startTime": iso(res["t_start"]), "endTime": iso(res["t_end"]),
            "completionStartTime": iso(res["t_first"]), "request_duration_ms": dur, "model": model,
            "model_id": f"{stack.name}/{model}", "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "cache_read_input_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            "spend": spend_total, "spend_prompt": spend_total - spend_c, "spend_completion": spend_c,
            "status": "success" if ok else "failure",
            "metadata": {"http_status": res["http_status"], "error": res["error"], "doc_id": req["doc_id"],
                         "server_ttft_ms": timing.get("time_to_first_token_ms"),
                         "queue_time_ms": timing.get("queue_time_ms")},
            "stack": stack.name, "lever": stack.lever, "language": req["language"], "domain": req["domain"],
            "input_bytes": len(req["prompt"].encode()), "output_bytes": len(res["text"].encode()),
            "reference_tokenizer": ref_tok.name, "reference_prompt_tokens": len(ref_tok.encode(req["prompt"])),
            "reference_completion_tokens": len(ref_tok.encode(res["text"])),
            "routed_model": model, "escalations": routing.get("escalations", 0),
            "route_reason": routing.get("reason"), "route_fallback": bool(routing.get("fallback")),
            "route_language": routing.get("language"), "route_predictions": routing.get("predictions") or [],
            "forward_passes": m.get("forward_passes", 0),
            "target_forward_passes": m.get("forward_passes", 0) if model == largest else 0,
            "draft_tokens_proposed": spec_m.get("num_draft_tokens", 0),
            "draft_tokens_accepted": spec_m.get("num_accepted_draft_tokens", 0),
            "spec_steps": spec_m.get("num_spec_steps", 0),
            "spec_alpha": spec_m.get("alpha"), "spec_k": spec_m.get("k"), "spec_c": spec_m.get("c"),
            "spec_v": spec_m.get("v"), "spec_predicted_speedup": spec_m.get("predicted_speedup"),
            "spec_measured_speedup": spec_m.get("measured_speedup"), "spec_auto_off": bool(spec_m.get("auto_off")),
            "spec_auto_off_at_token": spec_m.get("auto_off_at_token"),
            "ttft_ms": ttft, "itl_ms": timing.get("mean_itl_ms"),
            "tpot_ms": (dur - ttft) / (c - 1) if c > 1 else 0.0,
            "tokens_per_second": timing.get("tokens_per_second"),
            "quality_metric": "chrf", "quality_value": chrf(res["text"], req["reference"]) if ok else math.nan,
            "bits_per_byte": scorer(model, req["prompt"], req["reference"]) if ok else math.nan,
            "prompt_text": req["prompt"], "completion_text": res["text"], "price_table_hash": prices.hash,
        })  # fmt: skip
    return rows


@contextlib.contextmanager
def _stack_server(cfg: MeasureConfig, stack: StackSpec, scfg: Any, requests: list[dict], run_dir: str,
                  api_key: str | None) -> Iterator[Any]:  # fmt: skip
    """This stack's server, warmed up (each served model directly: a router may pick any of them)."""
    t0 = time.perf_counter()
    with serve_in_background(scfg, run_dir=run_dir) as srv:
        log.info(kv(stack=stack.name, model=stack.model, url=srv.url, threads=scfg.threads,
                    load_s=round(time.perf_counter() - t0, 1)))  # fmt: skip
        for m in scfg.models if cfg.warmup_requests else []:
            replay(srv.url, warmup_set(requests, cfg.warmup_requests), m.name, cfg.max_tokens, 1, api_key)
        yield srv


def _replay_in_turn(cfg: MeasureConfig, scfgs: dict[str, Any], requests: list[dict], run_dir: str,
                    api_key: str | None) -> tuple[dict[str, list[dict]], dict[str, float]]:  # fmt: skip
    """One stack after another, one server alive at a time: every request through a stack, then the next."""
    results, wall = {}, {}
    for stack in cfg.stacks:
        with _stack_server(cfg, stack, scfgs[stack.name], requests, run_dir, api_key) as srv:
            results[stack.name], wall[stack.name] = replay(
                srv.url, requests, stack.model, cfg.max_tokens, cfg.concurrency, api_key
            )
    return results, wall


def _replay_interleaved(cfg: MeasureConfig, scfgs: dict[str, Any], requests: list[dict], run_dir: str,
                        api_key: str | None) -> tuple[dict[str, list[dict]], dict[str, float]]:  # fmt: skip
    """Every stack's server at once; the requests go through the stacks in turns of ``cfg.interleave`` (the stack
    order rotating each turn), so a change in machine load falls on every stack alike. Wall time = a stack's turns."""
    threads = {name: c.threads for name, c in scfgs.items()}
    if len(set(threads.values())) > 1:
        raise ValueError(f"measure.interleave serves every stack from one process at once, so the stacks' torch "
                         f"threads must agree; got {threads} (set the same `threads`, or interleave: 0)")  # fmt: skip
    results: dict[str, list[dict]] = {s.name: [] for s in cfg.stacks}
    wall = dict.fromkeys(results, 0.0)
    with contextlib.ExitStack() as servers:
        urls = {s.name: servers.enter_context(_stack_server(cfg, s, scfgs[s.name], requests, run_dir, api_key)).url
                for s in cfg.stacks}  # fmt: skip
        for turn, i in enumerate(range(0, len(requests), cfg.interleave)):
            k = turn % len(cfg.stacks)
            for stack in cfg.stacks[k:] + cfg.stacks[:k]:
                res, w = replay(urls[stack.name], requests[i : i + cfg.interleave], stack.model, cfg.max_tokens,
                                cfg.concurrency, api_key)  # fmt: skip
                results[stack.name].extend(res)
                wall[stack.name] += w
    return results, wall


def run_measure(config_path: str, run_dir: str, inputs_hash: str | None = None) -> dict[str, Any]:
    """Replay the request set through every stack, write the ledger and the summary; returns the summary."""


    cfg: MeasureConfig = load_section(config_path, "measure", MeasureConfig)
    serve_cfg = load_section(config_path, "serve", ServeConfig)
    run = RunDir(run_dir)
    out = run.stage("measure")
    models = catalog(cfg, serve_cfg)
    prices = PriceTable.from_per_million({m.name: (m.price_input_per_1m, m.price_output_per_1m) for m in models})
    requests = build_requests(run_dir, cfg.requests, cfg.prompt_bytes, cfg.reference_bytes, cfg.seed,
                              cfg.languages, cfg.source)  # fmt: skip
    if not requests:
        raise ValueError(f"{run_dir}: no held-out documents long enough for {cfg.prompt_bytes}+ byte prompts")
    write_requests(requests, f"{out}/requests.jsonl")
    requests = read_requests(f"{out}/requests.jsonl")
    ref_tok = load_tokenizer(cfg.reference_tokenizer, run_dir)
    resolved = _resolved(serve_cfg, models, run_dir)
    base_tok, base_tok_name = baseline_tokenizer(cfg.stacks[0], resolved)
    scorer = Scorer(resolved)
    api_key = os.environ.get(cfg.api_key_env, "").split(",")[0] if cfg.api_key_env else None
    import torch  # heavy: deferred until used

    default_threads = torch.get_num_threads()
    scfgs = {s.name: _serve_config(serve_cfg, models, s, run_dir, default_threads) for s in cfg.stacks}
    replay_all = _replay_interleaved if cfg.interleave else _replay_in_turn
    try:
        results, wall = replay_all(cfg, scfgs, requests, run_dir, api_key)
    finally:  # the measuring process's own thread count back
        torch.set_num_threads(default_threads)
    rows: list[dict[str, Any]] = []
    for stack in cfg.stacks:
        largest = scfgs[stack.name].by_cost()[-1].name
        rows.extend(_rows(stack, results[stack.name], prices, ref_tok, largest, scorer))
        failed = sum(r["error"] is not None for r in results[stack.name])
        log.info(kv(stack=stack.name, requests=len(results[stack.name]), failed=failed,
                    wall_s=round(wall[stack.name], 2)))  # fmt: skip
    add_counterfactuals(rows, cfg.stacks[0].name, lambda text: len(base_tok.encode(text)), base_tok_name, prices)
    paths = write_ledger(rows, out)
    summary = summarize(rows, cfg, wall, prices, ref_tok, requests)
    summary["ledger"] = paths
    write_json(f"{out}/summary.json", summary)
    with atomic_open(f"{out}/summary.md", "w", encoding="utf-8") as f:
        f.write(summary_markdown(summary))
    run.mark_done("measure", inputs_hash or measure_inputs_hash(config_path, run_dir), {"rows": len(rows)})
    return summary


def summarize(rows: list[dict], cfg: MeasureConfig, wall: dict[str, float], prices: PriceTable, ref_tok: Any,
              requests: list[dict]) -> dict[str, Any]:  # fmt: skip
    """Totals per stack (with quality delta), per language and domain, lever decomposition (overall, per language,
    per domain), speculation's predicted vs measured speedup and auto-off, prompt-side levers."""
    slo = cfg.slo.model_dump()
    baseline = cfg.stacks[0].name
    known = {s.name for s in cfg.stacks}  # a side stack whose `after` stack was not selected: vs the one before it
    order = [(s.name, s.lever, s.after if s.after in known else None) for s in cfg.stacks]
    totals = {s.name: agg.stack_totals([r for r in rows if r["stack"] == s.name], wall[s.name], slo)
              for s in cfg.stacks}  # fmt: skip
    agg.with_quality_delta(totals, baseline)
    for s in cfg.stacks:
        after = s.after if s.after in known else None
        totals[s.name]["lever"], totals[s.name]["model"], totals[s.name]["after"] = s.lever, s.model, after
        spec = speculation_summary([r for r in rows if r["stack"] == s.name and r["status"] == "success"])
        if spec:
            totals[s.name]["speculative"] = spec
    for prev, cur in zip(cfg.stacks, cfg.stacks[1:], strict=False):
        spec = totals[cur.name].get("speculative")
        if spec is not None:  # measured decode speedup against the stack without the lever, beside the prediction
            p_tps, c_tps = totals[prev.name]["tokens_per_second_mean"], totals[cur.name]["tokens_per_second_mean"]
            spec["measured_speedup_vs"] = prev.name
            spec["measured_speedup"] = c_tps / p_tps if p_tps else None
    by_lang = agg.with_group_quality_delta(agg.by_group(rows, ("language",), wall, slo), baseline, ("language",))
    by_dom = agg.with_group_quality_delta(agg.by_group(rows, ("domain",), wall, slo), baseline, ("domain",))
    b = totals[baseline]
    prompts = [(r["request_id"], ref_tok.encode(r["prompt"])) for r in requests]
    base_rows = [r for r in rows if r["stack"] == baseline]
    return {
        "baseline": baseline, "reference_tokenizer": ref_tok.name, "requests": len(requests),
        "baseline_tokenizer": base_rows[0]["baseline_tokenizer"] if base_rows else None,
        "savings_basis": "the baseline stack's tokenizer on each stack's own prompt and completion text",
        "price_table": prices.prices, "price_table_hash": prices.hash, "slo": slo,
        "stacks": totals,
        "by_language": by_lang,
        "by_domain": by_dom,
        "levers": agg.decompose(totals, order),
        "levers_by_language": agg.decompose_by_group(by_lang, order, "language"),
        "levers_by_domain": agg.decompose_by_group(by_dom, order, "domain"),
        "prompt_side": {
            "cacheable_prefixes": agg.cacheable_prefixes(prompts),
            "prompt_to_output_ratio": {
                f"{g['language']}": g["prompt_tokens"] / g["completion_tokens"] if g["completion_tokens"] else None
                for g in agg.by_group(base_rows, ("language",), wall, slo)
            },
        },
        "goal": {
            "forward_passes_per_output_token_ratio": {
                s: (b["forward_passes_per_output_token"] / t["forward_passes_per_output_token"])
                if t["forward_passes_per_output_token"] else None for s, t in totals.items()},
            "billed_tokens_saved_share": {s: t["saved_tokens_share"] for s, t in totals.items()},
            "cost_saved_share": {s: t["saved_spend_share"] for s, t in totals.items()},
            "bits_per_byte_delta_rel": {s: t["bits_per_byte_delta_rel"] for s, t in totals.items()},
        },
    }  # fmt: skip


def speculation_summary(rows: list[dict]) -> dict[str, Any] | None:
    """α, mean accepted length, c, v and the predicted vs in-server measured speedup (each request weighted by its
    decode time), and the requests whose speculation switched itself off, by language; None without speculation."""
    spec = [r for r in rows if r.get("draft_tokens_proposed")]
    if not spec:
        return None
    acc, steps = sum(r["draft_tokens_accepted"] for r in spec), sum(r.get("spec_steps") or 0 for r in spec)
    prop = sum(r["draft_tokens_proposed"] for r in spec)

    def weighted(key: str) -> float | None:  # Σ tokens / Σ (tokens / speedup): a ratio of total times
        pairs = [(r["completion_tokens"] - 1, r[key]) for r in spec if r.get(key) and r["completion_tokens"] > 1]
        den = sum(n / x for n, x in pairs)
        return sum(n for n, _ in pairs) / den if den else None

    off = [r for r in rows if r.get("spec_auto_off")]
    langs = sorted({r["language"] for r in rows})
    return {
        "requests": len(rows), "drafted_requests": len(spec),
        "draft_acceptance_rate": acc / prop if prop else None,
        "mean_acceptance_length": 1 + acc / steps if steps else None,
        "c": _mean_of(spec, "spec_c"), "v": _mean_of(spec, "spec_v"),
        "predicted_speedup": weighted("spec_predicted_speedup"),
        "measured_speedup_in_server": weighted("spec_measured_speedup"),
        "auto_off_requests": len(off), "auto_off_share": len(off) / len(rows) if rows else 0.0,
        "auto_off_by_language": {lg: sum(r["language"] == lg for r in off) for lg in langs},
    }  # fmt: skip


def _mean_of(rows: list[dict], key: str) -> float | None:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return sum(xs) / len(xs) if xs else None


def summary_markdown(s: dict[str, Any]) -> str:
    """A short markdown table: savings vs the named baseline with the quality change beside them."""
    lines = [f"# Savings vs baseline `{s['baseline']}` on {s['requests']} held-out requests", "",
             f"Counted with the baseline's tokenizer (`{s.get('baseline_tokenizer')}`) on each stack's own prompt and "
             "completion text; quality (bits per byte of the reference, chrF) beside every saving.", "",
             "| stack | lever | billed tokens | baseline tokens (same text) | saved tokens | cost (USD) | "
             "saved cost | target fwd/out tok | TTFT p50 ms | bits/byte (Δ rel) | chrF (Δ) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, t in s["stacks"].items():
        lines.append(
            f"| {name} | {t['lever']} | {t['billed_tokens']:,} | {t['baseline_tokens']:,} | {t['saved_tokens']:,.0f} "
            f"({100 * t['saved_tokens_share']:.1f}%) | {t['spend']:.6f} | {100 * t['saved_spend_share']:.1f}% | "
            f"{t['forward_passes_per_output_token']:.3f} | {t['ttft_ms']['p50']:.0f} | "
            f"{t['bits_per_byte_mean']:.3f} ({100 * t['bits_per_byte_delta_rel']:+.1f}%) | "
            f"{t['quality_mean']:.1f} ({t['quality_delta']:+.1f}) |"
        )
    lines += ["", "Per lever (added one at a time, same requests; change in billed tokens per baseline token of the "
              "text handled):", ""]  # fmt: skip
    for lv in s["levers"]:
        lines.append(f"- **{lv['lever']}** ({lv['from_stack']} → {lv['to_stack']}): tokens "
                     f"{100 * lv['saved_tokens_share']:+.1f} points ({lv['billed_tokens_saved']:,.0f} at the "
                     f"baseline's volume), cost {100 * lv['saved_spend_share']:+.1f} points; "
                     f"bits/byte {lv['bits_per_byte_delta']:+.3f}, chrF {lv['quality_delta']:+.1f}")  # fmt: skip
    for name, t in s["stacks"].items():
        sp = t.get("speculative")
        if sp:
            lines.append(f"- speculation in **{name}**: acceptance {_f(sp['draft_acceptance_rate'])}, "
                         f"c {_f(sp['c'])}, v {_f(sp['v'])}, predicted {_f(sp['predicted_speedup'])}x, "
                         f"measured in server {_f(sp['measured_speedup_in_server'])}x; switched itself off in "
                         f"{sp['auto_off_requests']} of {sp['requests']} requests")  # fmt: skip
    return "\n".join(lines) + "\n"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def measure_inputs_hash(config_path: str, run_dir: str) -> str:
    """Config sections + completion markers of every model and of the curated set: what a measurement depends on."""


    cfg = load_section(config_path, "measure", MeasureConfig)
    serve_cfg = load_section(config_path, "serve", ServeConfig)
    markers = sorted(glob.glob(f"{run_dir}/models/*/_DONE.json")) + sorted(glob.glob(f"{run_dir}/curated/_DONE.json"))
    marks = [read_json(m).get("inputs_hash") for m in markers]
    calib = glob.glob(f"{run_dir}/serve/router.json")
    return hash_obj([cfg.model_dump(), serve_cfg.model_dump(), marks, [open(c).read() for c in calib]])


def measure_from_config(config_path: str, run_dir: str) -> str:
    """Demo stage: measure every stack (skipped when models, data and config are unchanged); one-line summary."""
    run, key = RunDir(run_dir), measure_inputs_hash(config_path, run_dir)
    if run.is_done("measure", key):
        s = read_json(run.path("measure", "summary.json"))
    else:
        s = run_measure(config_path, run_dir, inputs_hash=key)
    cumulative = [n for n, t in s["stacks"].items() if not t.get("after")]  # side stacks are not the headline
    last = cumulative[-1]
    t = s["stacks"][last]
    return (f"{last} vs {s['baseline']}: billed tokens {100 * t['saved_tokens_share']:+.1f}% saved, cost "
            f"{100 * t['saved_spend_share']:+.1f}% saved, bits/byte {100 * t['bits_per_byte_delta_rel']:+.1f}% "
            f"-> {RunDir(run_dir).path('measure', 'summary.json')}")  # fmt: skip
