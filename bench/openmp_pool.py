"""Decode steps in worker threads, with and without a stale OpenMP pool: what :mod:`serving.openmp_pool` fixes.

    nice -n 10 .venv/bin/python bench/openmp_pool.py --model DIR [--quantization int8_dynamic_outliers]
        [--rounds 3] [--steps 24] [--threads N] [--out bench/results/openmp_pool.json]

In-process, no server, torch's default thread count (every core) unless ``--threads``. Per round, in this order
(every variant sees the same machine load; each round starts again from a live main-thread pool):

- ``main``: the main thread decodes (its OpenMP pool is created and stays);
- ``worker_stale_pool``: a new thread decodes while the main thread's pool is still alive (a server without the fix:
  it loaded and calibrated in the main thread);
- ``worker_released``: the same after :func:`release_openmp_pool` in the main thread (the server's way now);
- ``turns_lock``: two threads take turns on the model under a ``threading.Lock`` (two requests in flight), each
  keeping its own pool;
- ``turns_forward_lock``: the same under :class:`ForwardLock` (a thread leaving while the other waits frees its pool;
  the server's backends share one per process on CPU: ``ForwardLock.for_device``).

Prints and writes the median ms per decode step of each variant, the ratios to ``worker_stale_pool`` and
``turns_lock``, the OS threads the process had during each variant and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from machine import machine  # noqa: E402

from serving.models import load_model  # noqa: E402
from serving.openmp_pool import ForwardLock, release_openmp_pool  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

PROMPT = [2, 651, 6037, 529, 7001, 563, 496, 3364, 236761]  # a short Gemma-vocabulary prompt (ids < 10k)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def decode_steps(model, steps: int, lock=None, pause_s: float = 0.0) -> tuple[list[float], int]:
    """Prefill PROMPT, then ``steps`` greedy decode steps (each under ``lock`` when given); seconds per step and the
    process's OS threads seen at the end."""
    ctx = lock or contextlib.nullcontext()
    with torch.inference_mode():
        with ctx:
            out = model(input_ids=torch.tensor([PROMPT]), use_cache=True)
        past, nxt, times = out.past_key_values, out.logits[:, -1:].argmax(-1), []
        for _ in range(steps):
            with ctx:
                t0 = time.perf_counter()
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                times.append(time.perf_counter() - t0)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            if pause_s:
                time.sleep(pause_s)  # a request thread's hand-off between steps: the other thread gets its turn
    return times, os_threads()


def in_threads(model, steps: int, n: int, lock=None) -> tuple[list[float], int]:
    """``n`` new threads decoding at once (taking turns under ``lock``); every step's time and the most OS threads."""
    results: list[tuple[list[float], int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(decode_steps(model, steps, lock, 0.0005 if n > 1 else 0)))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s for r in results for s in r[0]], max(r[1] for r in results)


def one_round(model, steps: int) -> dict[str, tuple[float, int]]:
    out = {}
    times, nthr = decode_steps(model, steps)
    out["main"] = (statistics.median(times), nthr)
    times, nthr = in_threads(model, steps, 1)
    out["worker_stale_pool"] = (statistics.median(times), nthr)
    release_openmp_pool()
    times, nthr = in_threads(model, steps, 1)
    out["worker_released"] = (statistics.median(times), nthr)
    times, nthr = in_threads(model, steps, 2, threading.Lock())
    out["turns_lock"] = (statistics.median(times), nthr)
    times, nthr = in_threads(model, steps, 2, ForwardLock())
    out["turns_forward_lock"] = (statistics.median(times), nthr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model dir (e.g. <run>/models/gemma-compact)")
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, every core)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "openmp_pool.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, quantization=args.quantization)
    decode_steps(model, 4)  # warm-up: weights paged in, allocator warm
    rounds = [one_round(model, args.steps) for _ in range(args.rounds)]
    ms = {k: round(1000 * statistics.median(r[k][0] for r in rounds), 2) for k in rounds[0]}
    result = {
        "model": args.model,
        "quantization": args.quantization,
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps": args.steps,
        "step_ms": ms,
        "os_threads": {k: max(r[k][1] for r in rounds) for k in rounds[0]},
        "per_round_step_ms": [{k: round(1000 * v[0], 2) for k, v in r.items()} for r in rounds],
        "released_vs_stale": round(ms["worker_stale_pool"] / ms["worker_released"], 3),
        "forward_lock_vs_lock": round(ms["turns_lock"] / ms["turns_forward_lock"], 3),
        "released_vs_main": round(ms["main"] / ms["worker_released"], 3),
        "machine": machine(),
    }
    print({k: result[k] for k in ("step_ms", "os_threads", "released_vs_stale", "forward_lock_vs_lock")})
    write_json(args.out, result)


if __name__ == "__main__":
    main()
