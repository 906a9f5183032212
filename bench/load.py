"""Bounded load test of the API on 127.0.0.1: latency percentiles, goodput under SLOs, memory, exactness, overload.

    .venv/bin/python bench/load.py [--small] [--requests N] [--concurrency C]

Serves two tiny Llamas (serving.decode.tiny, random init) in this process and sends a fixed number of streaming greedy
requests at a fixed concurrency; everything stops by itself. Reports client-side TTFT and TPOT (p50/p99), goodput
under the measure section's default SLOs (serving.measure.slo), resident memory sampled across rounds (flat = no
leak), whether every greedy output under concurrency equals the same prompt sent alone, and an overload phase: a
server with one slot and a queue of one, hit by a burst, must answer 429 with Retry-After at once instead of timing
out. Baseline vs ours: the same requests sent one at a time (baseline) vs concurrently (ours).
Writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402

from serving.api.config import ServeConfig  # noqa: E402
from serving.api.server import serve_in_background  # noqa: E402
from serving.decode.tiny import stdlib_texts, tiny_pair  # noqa: E402
from serving.measure.slo import goodput, percentile, tpot_ms  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "load.json"
SLO_TTFT_MS, SLO_TPOT_MS = 2000.0, 200.0  # serving.measure.config.SLOSpec defaults
TIMEOUT_S = 60.0


def serve_config(models: dict[str, Path], **limits: Any) -> ServeConfig:
    """The tiny pair behind the API with the given limits."""
    return ServeConfig(
        models=[
            {"name": "large", "path": str(models["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0},
            {"name": "small", "path": str(models["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
        ],
        limits={"max_tokens": 64, "default_max_tokens": 8, "max_prompt_tokens": 256, **limits},
    )


def prompts(n: int) -> list[str]:
    """Distinct short code prompts from the standard library (deterministic)."""
    return [t[:160] for t in stdlib_texts(n, skip=50)]


async def one(client: httpx.AsyncClient, body: dict) -> dict[str, Any]:
    """One streaming request: status, TTFT, TPOT, end-to-end time, text and token count (client-side clock)."""
    t0 = time.perf_counter()
    first, text, tokens, status, err, headers = None, "", 0, 0, None, {}
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            status, headers = r.status_code, dict(r.headers)
            if status != 200:
                err = (await r.aread()).decode("utf-8", "replace")[:300]
            else:
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                    for c in chunk.get("choices", []):
                        if c.get("text"):
                            first = first or time.perf_counter()
                            text += c["text"]
    except httpx.HTTPError as e:
        err = f"{type(e).__name__}: {e}"
    end = time.perf_counter()
    ttft = ((first or end) - t0) * 1000
    e2e = (end - t0) * 1000
    ok = status == 200 and err is None
    return {
        "status": "success" if ok else "failure", "http_status": status, "error": err, "text": text,
        "completion_tokens": tokens, "ttft_ms": ttft, "tpot_ms": tpot_ms(e2e, ttft, tokens), "e2e_ms": e2e,
        "retry_after": headers.get("retry-after"), "prompt": body["prompt"],
    }  # fmt: skip


async def send_all(url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    """Send every body with at most ``concurrency`` in flight; returns (rows in body order, wall seconds)."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:

        async def bounded(body: dict) -> dict:
            async with sem:
                return await one(client, body)

        t0 = time.perf_counter()
        rows = await asyncio.gather(*(bounded(b) for b in bodies))
        return list(rows), time.perf_counter() - t0


class RssSampler:
    """Resident memory of this process (the server runs in it) sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.05):
        self.proc, self.every, self.samples = psutil.Process(), every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(self.proc.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def bodies_for(texts: list[str], n: int, max_tokens: int) -> list[dict]:
    """n greedy streaming requests cycling over the prompts."""
    return [
        {"model": "large", "prompt": texts[i % len(texts)], "max_tokens": max_tokens, "temperature": 0,
         "stream": True, "stream_options": {"include_usage": True}}
        for i in range(n)
    ]  # fmt: skip


def latency(rows: list[dict]) -> dict[str, float]:
    """p50/p99 TTFT and TPOT (ms) of successful requests."""
    ok = [r for r in rows if r["status"] == "success"]
    return {
        "ttft_p50_ms": percentile([r["ttft_ms"] for r in ok], 50),
        "ttft_p99_ms": percentile([r["ttft_ms"] for r in ok], 99),
        "tpot_p50_ms": percentile([r["tpot_ms"] for r in ok], 50),
        "tpot_p99_ms": percentile([r["tpot_ms"] for r in ok], 99),
    }


def load_phase(
    models: dict[str, Path], requests: int, concurrency: int, rounds: int, max_tokens: int, n_prompts: int = 8
) -> dict:
    """Single-request references, then ``rounds`` rounds of ``requests`` at ``concurrency`` with RSS sampled."""
    texts = prompts(n_prompts)
    cfg = serve_config(models, max_concurrent=4, max_queue=max(16, concurrency * 2))
    with serve_in_background(cfg) as srv:
        asyncio.run(send_all(srv.url, bodies_for(texts, 4, max_tokens), 2))  # warm-up: allocator, caches
        alone, alone_wall = asyncio.run(send_all(srv.url, bodies_for(texts, len(texts), max_tokens), 1))
        reference = {r["prompt"]: r["text"] for r in alone}
        rows, walls, rss_mb = [], [], []
        with RssSampler() as rss:
            for _ in range(rounds):
                got, wall = asyncio.run(send_all(srv.url, bodies_for(texts, requests, max_tokens), concurrency))
                rows += got
                walls.append(wall)
                rss_mb.append(psutil.Process().memory_info().rss / 2**20)
        health = httpx.get(srv.url + "/health", timeout=10).status_code
    ok = [r for r in rows if r["status"] == "success"]
    mismatched = [r["prompt"][:40] for r in ok if r["text"] != reference[r["prompt"]]]
    alone_tps = sum(r["completion_tokens"] for r in alone) / alone_wall
    conc_tps = sum(r["completion_tokens"] for r in rows[:requests]) / walls[0]
    return {
        "requests": len(rows), "concurrency": concurrency, "rounds": rounds, "max_tokens": max_tokens,
        "failed": len(rows) - len(ok), "errors": sorted({str(r["error"])[:120] for r in rows if r["error"]})[:5],
        **latency(rows),
        "goodput": goodput(rows, sum(walls), SLO_TTFT_MS, SLO_TPOT_MS),
        "greedy_equal_to_single_request": not mismatched, "mismatched": mismatched[:5],
        "rss_mb_after_each_round": [round(x, 1) for x in rss_mb],
        "rss_growth_mb": round(rss_mb[-1] - rss_mb[0], 1),
        "rss_peak_mb": round(max(rss.samples or [0]) / 2**20, 1), "rss_samples": len(rss.samples),
        "single_request": {"tokens_per_s": alone_tps, **latency(alone)},
        "concurrent_tokens_per_s": conc_tps, "speedup_vs_single": conc_tps / alone_tps if alone_tps else None,
        "health_after": health,
    }  # fmt: skip


def overload_phase(models: dict[str, Path], burst: int, max_tokens: int) -> dict:
    """One slot, a queue of one, a burst of ``burst`` requests: the rest must get 429 + Retry-After, fast."""
    cfg = serve_config(models, max_concurrent=1, max_queue=1, retry_after_s=2)
    texts = prompts(4)
    with serve_in_background(cfg) as srv:
        rows, wall = asyncio.run(send_all(srv.url, bodies_for(texts, burst, max_tokens), burst))
        after, _ = asyncio.run(send_all(srv.url, bodies_for(texts, 2, 4), 1))
    rejected = [r for r in rows if r["http_status"] == 429]
    return {
        "burst": burst, "max_concurrent": 1, "max_queue": 1, "wall_s": wall,
        "ok": sum(r["http_status"] == 200 for r in rows), "rejected_429": len(rejected),
        "other": sorted({r["http_status"] for r in rows} - {200, 429}),
        "timeouts": sum("Timeout" in str(r["error"]) for r in rows),
        "retry_after": sorted({r["retry_after"] for r in rejected}),
        "rejected_json_errors": all(json.loads(r["error"])["error"]["message"] for r in rejected),
        "rejected_p99_ms": percentile([r["e2e_ms"] for r in rejected], 99),
        "served_after_burst": all(r["status"] == "success" for r in after),
    }  # fmt: skip


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def run_load(
    root: Path,
    requests: int = 48,
    concurrency: int = 8,
    rounds: int = 3,
    max_tokens: int = 16,
    burst: int = 16,
    n_prompts: int = 8,
    overload_tokens: int = 48,
) -> dict:
    """Both phases on a fresh tiny pair under ``root``."""
    models = tiny_pair(root)
    return {
        "load": load_phase(models, requests, concurrency, rounds, max_tokens, n_prompts),
        "overload": overload_phase(models, burst, overload_tokens),
        "slo": {"ttft_ms": SLO_TTFT_MS, "tpot_ms": SLO_TPOT_MS},
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="fewer requests (a quick check)")
    ap.add_argument("--requests", type=int, default=None, help="requests per round")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    n = args.requests or (32 if args.small else 96)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_load(Path(tmp), n, args.concurrency, rounds=2 if args.small else 4)
    res["args"] = vars(args)
    write_json(OUT, res)
    ld, ov = res["load"], res["overload"]
    print(f"load: {ld['requests']} requests at concurrency {ld['concurrency']}, {ld['failed']} failed")
    print(f"  TTFT p50/p99 {ld['ttft_p50_ms']:.0f}/{ld['ttft_p99_ms']:.0f} ms, "
          f"TPOT p50/p99 {ld['tpot_p50_ms']:.1f}/{ld['tpot_p99_ms']:.1f} ms")  # fmt: skip
    g = ld["goodput"]
    print(f"  goodput {g['goodput_rps']:.2f} req/s ({g['slo_attainment']:.0%} within TTFT<={SLO_TTFT_MS:.0f} ms, "
          f"TPOT<={SLO_TPOT_MS:.0f} ms); throughput {g['throughput_rps']:.2f} req/s")  # fmt: skip
    print(f"  baseline (one at a time) {ld['single_request']['tokens_per_s']:.1f} tok/s vs concurrent "
          f"{ld['concurrent_tokens_per_s']:.1f} tok/s: {ld['speedup_vs_single']:.2f}x")  # fmt: skip
    print(f"  RSS after each round {ld['rss_mb_after_each_round']} MB (growth {ld['rss_growth_mb']} MB); "
          f"greedy == single-request: {ld['greedy_equal_to_single_request']}")  # fmt: skip
    print(f"overload: burst {ov['burst']} on 1 slot + queue 1: {ov['ok']} ok, {ov['rejected_429']} x 429 "
          f"(Retry-After {ov['retry_after']}, p99 {ov['rejected_p99_ms']:.0f} ms), "
          f"{ov['timeouts']} timeouts")  # fmt: skip
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
