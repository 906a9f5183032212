"""How fast speculation can make the served Gemma on the demo's request mix with drafters that need no training: the
ceiling of prompt lookup (and of a corpus-retrieval drafter behind it) from the target's own greedy outputs and its
measured verify cost per position count, checked against a measured prompt-lookup run.

    flock /work/wt/bench.lock .venv/bin/python bench/spec_ceiling.py --run runs/demo [--prompts 40]

Per held-out request (stratified over language x domain like the measurement's) the target decodes greedily; those
tokens are what any exact drafter must propose. A simulated speculative decode then walks each output: at every step
the drafter proposes up to k tokens from the context, the longest prefix matching the target's tokens is accepted,
plus the target's next token. Drafters: ``prompt_lookup`` (the serving engine's own ``PromptLookup``), ``corpus``
(REST-style retrieval: the most frequent continuation of the context's longest suffix (<= 4 tokens) in the curated
training split, tokenized like the prompts) and ``prompt_lookup+corpus`` (the corpus only where the prompt has no
match). The time of a pass over n positions is the target's measured cost table (n = 1..8 after a real prompt,
rounds interleaved, medians, as a share of one decode step), so the predicted speedup of a drafter at k is the
plain steps' count over the summed pass costs, drafting free. ``measured`` runs the engine's prompt lookup at k=2 and
at the best predicted k against plain decoding on the same prompts, interleaved per prompt.
Writes ``bench/results/spec_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gemma import encode_prompts, requests  # noqa: E402  (bench/gemma.py: the same held-out request mix)
from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

from serving.decode.engine import Engine  # noqa: E402
from serving.decode.generate import crop_cache, forward, new_cache, prefill  # noqa: E402
from serving.decode.speculative import PromptLookup  # noqa: E402
from serving.models import load_model, load_tokenizer  # noqa: E402
from serving.quantize.compact import iter_split  # noqa: E402
from tokenwise.vocab import KeptVocab  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MULT = np.uint64(1000003)


class CorpusDrafter:
    """REST-style retrieval drafter: the most frequent continuation of the context's longest matching suffix in a
    token datastore (n-gram hashes sorted once; a lookup is a binary search)."""

    def __init__(self, tokens: np.ndarray, orders: tuple[int, ...] = (4, 3, 2, 1), cap: int = 64) -> None:
        self.tokens, self.cap, self.index = tokens, cap, {}
        for n in orders:
            size = len(tokens) - n  # positions whose n-gram has a next token
            h = np.zeros(size, dtype=np.uint64)
            for j in range(n):
                h = h * MULT + tokens[j : j + size].astype(np.uint64)
            order = np.argsort(h, kind="stable")
            self.index[n] = (h[order], order)

    def propose(self, seq: list[int], k: int) -> list[int]:
        for n, (hashes, order) in self.index.items():
            if len(seq) < n:
                continue
            h = np.uint64(0)
            with np.errstate(over="ignore"):  # the hash wraps mod 2**64 like the index's
                for x in seq[-n:]:
                    h = h * MULT + np.uint64(x)
            lo, hi = np.searchsorted(hashes, h, "left"), np.searchsorted(hashes, h, "right")
            if hi == lo:
                continue
            pos, out = order[lo : min(hi, lo + self.cap)] + n, []
            for j in range(k):
                pos = pos[pos + j < len(self.tokens)]
                if not len(pos):
                    break
                nxt = self.tokens[pos + j]
                vals, counts = np.unique(nxt, return_counts=True)
                best = vals[counts.argmax()]
                out.append(int(best))
                pos = pos[nxt == best]
            return out
        return []


def datastore(run: Path, tok: Any, kept: KeptVocab) -> np.ndarray:
    """The curated training split (compact stage's ``count`` part) in the served ids, documents joined by EOS."""
    ids: list[int] = []
    buf: list[str] = []
    backend = tok.backend_tokenizer

    def flush() -> None:
        for enc in backend.encode_batch(buf, add_special_tokens=False):
            ids.extend(kept.respell(enc.ids))
            ids.append(tok.eos_token_id)
        buf.clear()

    for text in iter_split(run / "curated", "count", None, None, None, 0.1):
        buf.append(text)
        if len(buf) == 512:
            flush()
    flush()
    return np.array(ids, dtype=np.int64)


def cost_table(
    model: torch.nn.Module, prompt: list[int], max_n: int, rounds: int = 5, reps: int = 5
) -> dict[int, float]:
    """Median time of a forward over n positions after ``prompt`` (n = 1..max_n) as a share of n = 1's; each round
    times every n (so load on the machine falls on all alike)."""
    times: dict[int, list[float]] = {n: [] for n in range(1, max_n + 1)}
    with torch.inference_mode():
        cache = new_cache(model, rollback=True)
        prefill(model, prompt, cache)
        length = cache.get_seq_length()
        for r in range(rounds + 1):
            for n in times:
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    forward(model, prompt[-n:], cache)
                    ts.append(time.perf_counter() - t0)
                    crop_cache(cache, length)
                if r:  # the first round warms up
                    times[n].append(statistics.median(ts))
    one = statistics.median(times[1])
    return {n: statistics.median(v) / one for n, v in times.items()} | {0: one}


def simulate(prompts: list[list[int]], outs: list[list[int]], k: int, drafter: Any, cost: dict[int, float]) -> dict:
    """Walk each greedy output with ``drafter``: tokens per target pass, acceptance, predicted speedup."""
    passes = tokens = proposed = accepted = drafted_passes = 0
    spent = 0.0
    for prompt, out in zip(prompts, outs, strict=True):
        seq, t = list(prompt) + out[:1], 1
        while t < len(out):
            kk = min(k, len(out) - t - 1)
            drafts = drafter(seq, kk) if kk > 0 else []
            a = 0
            while a < len(drafts) and drafts[a] == out[t + a]:
                a += 1
            new = out[t : t + a + 1]
            seq += new
            t += len(new)
            passes, tokens, proposed, accepted = passes + 1, tokens + len(new), proposed + len(drafts), accepted + a
            drafted_passes += bool(drafts)
            spent += cost[len(drafts) + 1]
    return {"k": k, "tokens_per_pass": tokens / passes, "passes_with_draft": drafted_passes / passes,
            "accepted_share_of_proposed": accepted / proposed if proposed else 0.0,
            "predicted_speedup": tokens / spent}  # fmt: skip


def measured(engine: Engine, prompts: list[list[int]], outs: list[list[int]], ks: list[int], new: int) -> dict:
    """Engine prompt lookup at each k vs plain decoding, interleaved per prompt: decode tokens/s and exactness."""
    secs = dict.fromkeys(["target_only", *[f"k{k}" for k in ks]], 0.0)
    toks = dict.fromkeys(secs, 0)
    same = dict.fromkeys(ks, 0)
    for p, ref in zip(prompts, outs, strict=True):
        for name in secs:
            kw = {} if name == "target_only" else {"mode": "prompt_lookup", "k": int(name[1:])}
            got, st = engine.generate(p, max_new_tokens=new, **kw)
            secs[name] += st["decode_s"]
            toks[name] += len(got) - 1
            if name != "target_only":
                same[int(name[1:])] += got == ref
    base = toks["target_only"] / secs["target_only"]
    return {"target_only_decode_tokens_per_s": base} | {
        f"prompt_lookup_k{k}": {"decode_tokens_per_s": toks[f"k{k}"] / secs[f"k{k}"],
                                "speedup": toks[f"k{k}"] / secs[f"k{k}"] / base,
                                "greedy_identical_prompts": same[k]} for k in ks}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run dir with models/gemma-compact and curated/")
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument(
        "--quantization", default="int8_dynamic_outliers", help="the target as the optimized stack runs it"
    )
    ap.add_argument("--max-k", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the servers run)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run = Path(args.run)
    tok = load_tokenizer(run / "models" / "gemma-compact")
    kept = KeptVocab.load(run / "models" / "gemma-compact").attach(tok)
    target = load_model(run / "models" / "gemma-compact", "cpu", quantization=args.quantization)
    reqs = requests(args.run, args.prompts)
    prompts = encode_prompts(tok, reqs, kept)
    engine = Engine(target, None, prompt_lookup_ngram=3)
    engine.generate(prompts[0], max_new_tokens=2)
    outs = [engine.generate(p, max_new_tokens=args.new_tokens)[0] for p in prompts]
    cost = cost_table(target, prompts[0], args.max_k + 1)
    t1 = time.perf_counter()
    store = CorpusDrafter(datastore(run, tok, kept))
    store_s = time.perf_counter() - t1
    lookup = PromptLookup(3, 1)

    def pl(seq: list[int], k: int) -> list[int]:
        return lookup.propose(seq, k, 0.0, 1.0, None)[0]

    drafters = {"prompt_lookup": pl, "corpus": store.propose,
                "prompt_lookup+corpus": lambda s, k: pl(s, k) or store.propose(s, k)}  # fmt: skip
    ks = range(1, args.max_k + 1)
    sims = {name: [simulate(prompts, outs, k, d, cost) for k in ks] for name, d in drafters.items()}
    best = {name: max(rows, key=lambda r: r["predicted_speedup"]) for name, rows in sims.items()}
    k_best = best["prompt_lookup"]["k"]
    runs = measured(engine, prompts, outs, sorted({2, k_best}), args.new_tokens)
    top = max(best.values(), key=lambda r: r["predicted_speedup"])
    result = {
        "machine": machine() | {"torch_threads": torch.get_num_threads()},
        "run": args.run,
        "target": f"gemma-compact ({args.quantization})",
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "datastore_tokens": len(store.tokens),
        "datastore_s": store_s,
        "step_ms": 1e3 * cost[0],
        "pass_cost_vs_step": {n: c for n, c in cost.items() if n},
        "simulated": sims,
        "best": best,
        "ceiling": {
            "drafter": next(n for n, r in best.items() if r is top),
            **top,
            # tokens per pass a drafter would need at that k for 2x (every pass drafting k tokens)
            "tokens_per_pass_for_2x": 2 * cost[top["k"] + 1],
        },  # fmt: skip
        "measured": runs,
        "goal_speedup": 2.0,
        "seconds": time.perf_counter() - t0,
    }
    out = RESULTS / "spec_ceiling.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("pass_cost_vs_step", "best", "ceiling", "measured")}, indent=1))
    print(f"wrote {out} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
