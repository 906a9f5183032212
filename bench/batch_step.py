"""One decode step, side by side: the one-at-a-time Engine vs the continuous-batching BatchEngine on the same model.

    nice -n 10 .venv/bin/python bench/batch_step.py --model DIR [--batches 1,2,8] [--rounds 5] [--threads 2]

In-process, no server. Per round and batch size ``b``, interleaved (all variants see the same machine load):

- ``engine``: the Engine decodes one request (``decode_compute_s`` per step of
  :func:`serving.decode.generate.target_stream`);
- ``batch``: the BatchEngine decodes ``b`` requests submitted together (distinct prompts of the same length: they
  prefill in one packed pass, then decode in lockstep; per-request ``target_step_s`` = decode wall time per step,
  scheduler-thread hand-off included), with its LM-head row padding (:mod:`serving.decode.head_rows`);
  and its screened LM head (:mod:`serving.decode.head_screen`: the requests ask no scores, so every pass screens);
- ``batch_unscreened``: the same, the full fp32 head every step (padded);
- ``batch_unpadded``: the same engine with the screen and the padding switched off (the engine before both).

Greedy tokens of every batched variant are compared with the unscreened ones at every batch size
(``greedy_screened_equals_full``), and the screened head is timed on real hidden states beside the full one
(``head_screen_ms``: rows -> {full, screened}, candidates per row).

Prints and writes the median ms per step, tokens/s (one at a time: 1 token per Engine step; batched: ``b`` per step),
ratios, whether the batch-1 greedy tokens equal the Engine's, the head's measured time per row count (``head_ms``)
and the padding plan chosen. ``--profile`` adds torch.profiler's top ops (the scheduler's iterations driven in this
thread). Writes bench/results/batch_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from machine import machine  # noqa: E402

from serving.decode.batch import BatchEngine  # noqa: E402
from serving.decode.generate import Stream, target_stream  # noqa: E402
from serving.decode.head_rows import PAD_TO, _hidden_size, _time_head, median_seconds  # noqa: E402
from serving.decode.head_screen import ScreenedHead, head_inputs  # noqa: E402
from serving.decode.tiny import stdlib_texts  # noqa: E402
from serving.models import load_model, load_tokenizer  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VARIANTS = ("engine", "batch", "batch_unscreened", "batch_unpadded")


def prompts(tok, n: int, length: int) -> list[list[int]]:
    """``n`` distinct prompts of exactly ``length`` tokens cut from standard-library source."""
    out = []
    for text in stdlib_texts(4 * n, max_chars=6000, skip=10):
        ids = tok.encode(text, add_special_tokens=False)[:length]
        if len(ids) == length:
            out.append(ids)
        if len(out) == n:
            return out
    raise SystemExit(f"not enough stdlib text for {n} prompts of {length} tokens")


def engine_step(model, prompt: list[int], new: int) -> tuple[float, list[int]]:
    """The Engine's decode compute per step (s) and its greedy tokens."""
    toks, st = Stream(target_stream(model, prompt, new)).run()
    return st["decode_compute_s"] / (new - 1), toks


def batch_step(engine: BatchEngine, batch: list[list[int]], new: int, padded: bool = True,
               screened: bool = True) -> tuple[float, list[list[int]]]:  # fmt: skip
    """The BatchEngine's decode wall time per step (s, mean over the requests) and every request's tokens."""
    screen = engine.head_screen
    if engine.head_padding is not None:
        engine.head_padding.enabled = padded
    engine.head_screen = screen if screened else None
    try:
        streams = [engine.stream(p, max_new_tokens=new, scores=False) for p in batch]
        runs = [s.run() for s in streams]
    finally:
        engine.head_screen = screen
        if engine.head_padding is not None:
            engine.head_padding.enabled = True
    return statistics.mean(st["target_step_s"] for _, st in runs), [toks for toks, _ in runs]


def screen_times(model, prompt: list[int], rows: list[int], reps: int = 5) -> dict[str, dict[str, float]]:
    """The LM head on real hidden states (the prompt's last positions): full fp32 vs screened, ms (median of
    ``reps``), and the screen's candidates per row."""
    head = model.get_output_embeddings()
    if not isinstance(head, ScreenedHead):
        return {}
    hidden = head_inputs(model, torch.tensor([prompt]))
    out = {}
    for r in rows:
        x = hidden[-r:].clone()
        before = dict(head.stats)
        with torch.inference_mode():
            full = median_seconds(lambda x=x: head(x), reps) * 1e3
            with head.screening():
                scr = median_seconds(lambda x=x: head(x), reps) * 1e3
        rows_screened = head.stats["screened_rows"] - before["screened_rows"]
        cand = (head.stats["candidates"] - before["candidates"]) / rows_screened
        out[str(r)] = {"full_ms": full, "screened_ms": scr, "full_over_screened": full / scr,
                       "candidates_per_row": cand}  # fmt: skip
    return out


def head_times(model, rows: list[int], reps: int = 3) -> dict[str, float]:
    """The LM head's time (ms, median of ``reps``) at each row count, unpadded."""
    head, p = model.get_output_embeddings(), next(model.parameters())
    hidden = _hidden_size(model)
    pad = getattr(model, "_tokenwise_head_padding", None)
    if pad is not None:
        pad.enabled = False
    with torch.inference_mode():
        out = {str(r): _time_head(head, hidden, r, p.dtype, p.device, reps) * 1e3 for r in rows}
    if pad is not None:
        pad.enabled = True
    return out


def profile_step(engine: BatchEngine, batch: list[list[int]], new: int, top: int = 15) -> str:
    """torch.profiler's op table (self CPU time) over one batched generation of ``new`` tokens, with the scheduler's
    iterations driven in this thread (the profiler records the thread it runs in)."""
    from torch.profiler import ProfilerActivity, profile, record_function  # heavy: only with --profile

    engine.close()  # the scheduler thread ends; this thread runs its iterations below
    engine._closed, engine._thread = False, threading.current_thread()  # stream() then starts no thread
    streams = [engine.stream(p, max_new_tokens=new, scores=False) for p in batch]  # as timed: screened passes
    engine.waiting.extend(engine._inbox)
    engine._inbox = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        while engine.waiting or engine.prefilling or engine.decoding:
            engine._admit()
            with torch.inference_mode(), record_function("scheduler_step"):
                engine._step()
    for s in streams:
        s.run()
    engine._thread = None
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def profile_engine(model, prompt: list[int], new: int, top: int = 15) -> str:
    """torch.profiler's op table (self CPU time) over one Engine generation of ``new`` tokens."""
    from torch.profiler import ProfilerActivity, profile  # heavy: only with --profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine_step(model, prompt, new)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model dir (e.g. runs/demo/models/gemma)")
    ap.add_argument("--batches", default="1,2,8", help="comma-separated batch sizes")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    ap.add_argument("--new", type=int, default=16, help="tokens generated per request")
    ap.add_argument("--prompt-tokens", type=int, default=59, help="tokens per prompt")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of a batched step")
    ap.add_argument("--out", default=str(RESULTS / "batch_step.json"), help="JSON path")
    ap.add_argument("--note", default="", help="a line stored in the JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    model = load_model(args.model)
    tok = load_tokenizer(args.model)
    ps = prompts(tok, max(batches), args.prompt_tokens)
    t_init = time.perf_counter()
    engine = BatchEngine(model, kv_budget_tokens=max(batches) * (args.prompt_tokens + args.new + 32),
                         max_batch=max(16, max(batches)))  # fmt: skip
    init_s = time.perf_counter() - t_init
    plan = engine.head_padding.plan if engine.head_padding is not None else {}
    print(f"BatchEngine start {init_s:.1f} s (head padding measured in it); padding plan {plan}", flush=True)
    print(f"screened head: {engine.head_screen is not None}", flush=True)
    engine_step(model, ps[0], 4), batch_step(engine, ps[:1], 4), batch_step(engine, ps[:1], 4, False, False)  # warm
    times = {v: {b: [] for b in batches} for v in VARIANTS}
    same, screened_same = True, True
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for b in batches:
            e, ref = engine_step(model, ps[0], args.new)
            x, toks = batch_step(engine, ps[:b], args.new)
            f, toks_f = batch_step(engine, ps[:b], args.new, screened=False)
            u, toks_u = batch_step(engine, ps[:b], args.new, padded=False, screened=False)
            same &= toks_f[0] == ref if b == 1 else True
            screened_same &= toks == toks_f == toks_u
            for v, val in zip(VARIANTS, (e, x, f, u), strict=True):
                times[v][b].append(val * 1e3)
            print(f"round {r} batch {b}: engine {e * 1e3:.1f}, batch engine {x * 1e3:.1f}, unscreened "
                  f"{f * 1e3:.1f}, unpadded {u * 1e3:.1f} ms/step", flush=True)  # fmt: skip
    rows = {}
    for b in batches if args.rounds else []:
        e, x, f, u = (statistics.median(times[v][b]) for v in VARIANTS)
        rows[str(b)] = {"engine_ms_per_step": e, "batch_ms_per_step": x, "batch_unscreened_ms_per_step": f,
                        "batch_unpadded_ms_per_step": u, "batch_over_engine": x / e, "unscreened_over_screened": f / x,
                        "unpadded_over_padded": u / f, "batch_unscreened_tokens_per_s": b * 1e3 / f,
                        "engine_tokens_per_s": 1e3 / e, "batch_tokens_per_s": b * 1e3 / x,
                        "batch_unpadded_tokens_per_s": b * 1e3 / u, "batch_speedup_vs_engine": b * e / x,
                        **{f"{v}_ms": times[v][b] for v in VARIANTS}}  # fmt: skip
        print(f"batch {b}: engine {e:.1f} ms/step ({1e3 / e:.1f} tok/s one at a time), batch engine {x:.1f} ms/step "
              f"({b * 1e3 / x:.1f} tok/s, {b * e / x:.2f}x), unscreened {f:.1f} ms/step ({f / x:.2f}x the screened), "
              f"unpadded {u:.1f} ms/step ({b * 1e3 / u:.1f} tok/s); "
              f"batch/engine step {x / e:.2f}")  # fmt: skip
    head = head_times(model, sorted({*range(1, PAD_TO + 1), *batches}))
    print("LM head ms by rows (unpadded):", {k: round(v, 1) for k, v in head.items()})
    screen = screen_times(model, ps[0], sorted({1, 2, 4, 8, 16, *batches}))
    print("LM head on real hidden states, full vs screened:", screen)
    profiles = {}
    if args.profile:
        profiles = {"engine": profile_engine(model, ps[0], args.new)}
        profiles |= {str(b): profile_step(engine, ps[:b], args.new) for b in batches}
    for b, table in profiles.items():
        print(f"--- {b}: top ops of one generation ({args.new} tokens)\n{table}")
    engine.close()
    out = {"machine": machine(), "args": vars(args), "note": args.note, "threads": torch.get_num_threads(),
           "model": args.model, "greedy_batch1_equals_engine": same, "greedy_screened_equals_full": screened_same,
           "engine_start_s": init_s, "head_screen_ms": screen,
           "head_screen_stats": engine.head_screen.stats if engine.head_screen is not None else None,
           "head_padding_plan": {str(k): v for k, v in plan.items()}, "head_ms": head,
           "seconds": time.perf_counter() - t0, "batches": rows, "profiles": profiles}  # fmt: skip
    write_json(Path(args.out), out)
    print(f"greedy batch-1 tokens equal the Engine's: {same}; screened equal unscreened (every batch size): "
          f"{screened_same}; wrote {args.out}")


if __name__ == "__main__":
    main()
