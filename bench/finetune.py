"""LoRA vs full fine-tuning of the same >=20M-parameter Llama in one run: tokens/s, peak memory, trainable share.

Usage: .venv/bin/python bench/finetune.py [--small] [--hidden 512 --layers 6 --vocab 8000] [--out PATH]
Each method runs in its own subprocess so peak memory (CUDA max allocated, else sampled process RSS) is its own.
Writes bench/results/finetune.json with the machine (CPU model, cores, GPU if any).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(out: Path, hidden: int, layers: int, vocab: int) -> None:
    """A random-init Llama (>=20M params at the default size) with a BPE trained on real stdlib text."""
    from finetune.testing import stdlib_docs, tiny_llama, train_tokenizer

    texts = [d["text"] for d in stdlib_docs()]
    tok = train_tokenizer(out, texts, vocab_size=vocab)
    tiny_llama(
        out,
        tok,
        hidden=hidden,
        layers=layers,
        intermediate_size=int(hidden * 2.6875),
        num_attention_heads=8,
        num_key_value_heads=8,
        initializer_range=0.02,
        max_positions=2048,
    )


def child(method: str, model: str, steps: int, seq_len: int, batch: int) -> dict:
    """Train ``steps`` steps with one method in this process; returns its metrics."""
    import psutil

    from finetune.config import DataConfig, LoraConfig
    from finetune.data import finite_texts
    from finetune.lora import LoraRecipe
    from finetune.testing import stdlib_docs

    texts = [d["text"] for d in stdlib_docs()]
    cfg = LoraConfig(
        base=model,
        data=DataConfig(seq_len=seq_len),
        rank=8,
        alpha=16,
        steps=steps + 1,
        batch_size=batch,
        lr=1e-4,
        warmup_steps=0,
        eval_every=10_000,
        checkpoint_every=10_000,
        resume=False,
    )
    rss0 = psutil.Process().memory_info().rss
    r = LoraRecipe(cfg, out_dir=tempfile.mkdtemp(), method=method).setup(finite_texts(texts), [])
    r.train(max_steps=1)  # warm-up step, not timed
    r.train_tokens, r.train_seconds = 0, 0.0
    m = r.train(max_steps=steps)
    return {
        k: m[k]
        for k in (
            "method",
            "device",
            "dtype",
            "trainable_params",
            "total_params",
            "trainable_share",
            "tokens_per_s",
            "peak_memory_bytes",
            "peak_memory_kind",
            "train_tokens",
            "train_seconds",
        )
    } | {"rss_before_setup_bytes": rss0}


def run_child(method: str, args, model: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--model",
        str(model),
        "--steps",
        str(args.steps),
        "--seq-len",
        str(args.seq_len),
        "--batch",
        str(args.batch),
    ]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env=os.environ | {"TOKENWISE_LOG_LEVEL": "WARNING"}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true", help="fewer steps (CI smoke run)")
    p.add_argument("--child")
    p.add_argument("--model")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune.json"))
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.steps, args.seq_len, args.batch)))
        return
    if args.small:
        args.steps = 3
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        build_model(model, hidden=args.hidden, layers=args.layers, vocab=args.vocab)
        t0 = time.perf_counter()
        full, lora = run_child("full", args, model), run_child("lora", args, model)
    mem_ratio = lora["peak_memory_bytes"] / full["peak_memory_bytes"]
    # on CPU the process RSS includes the torch runtime; the growth over the pre-setup RSS is the training's own
    growth = [m["peak_memory_bytes"] - m["rss_before_setup_bytes"] for m in (lora, full)]
    result = {
        "machine": machine(),
        "model": {
            "arch": "llama",
            "hidden": args.hidden,
            "layers": args.layers,
            "vocab": args.vocab,
            "params": full["total_params"],
        },
        "settings": {
            "steps": args.steps,
            "seq_len": args.seq_len,
            "batch": args.batch,
            "rank": 8,
            "target_modules": "q,k,v,o",
        },
        "full": full,
        "lora": lora,
        "ratios": {
            "lora_over_full_tokens_per_s": lora["tokens_per_s"] / full["tokens_per_s"],
            "lora_over_full_peak_memory": mem_ratio,
            "lora_over_full_memory_growth": growth[0] / growth[1]
            if lora["peak_memory_kind"] == "process_rss"
            else None,
        },
        "goals": {
            "trainable_share_lt_1pct": lora["trainable_share"] < 0.01,
            "lora_peak_memory_le_60pct_of_full": mem_ratio <= 0.6,
            "memory_kind": lora["peak_memory_kind"],
            "note": None
            if machine()["gpu"]
            else "no GPU this session: peak memory is whole-process RSS on CPU "
            "(includes torch runtime and the frozen base), so the GPU goal is not measured here",
        },
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    gb = 1 / 2**30
    print(f"model {full['total_params'] / 1e6:.1f}M params on {full['device']}")
    for m in (full, lora):
        print(
            f"  {m['method']:>4}: {m['tokens_per_s']:8.0f} tok/s  peak {m['peak_memory_bytes'] * gb:.2f} GiB "
            f"({m['peak_memory_kind']})  trainable {100 * m['trainable_share']:.3f}%"
        )
    r = result["ratios"]
    print(f"  lora/full: tokens/s x{r['lora_over_full_tokens_per_s']:.2f}, peak memory x{mem_ratio:.2f}")
    if r["lora_over_full_memory_growth"] is not None:
        print(f"  lora/full memory growth over pre-setup RSS: x{r['lora_over_full_memory_growth']:.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
