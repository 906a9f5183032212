"""The full LoRA recipe on Gemma 3 270M (the demo runs an 8-step CPU version of it): held-out bits per byte before and
after, trainable share, tokens/s and peak memory, on the run's curated documents of one domain.

    .venv/bin/python bench/finetune_gemma.py --run runs/demo [--domain docs] [--steps 300]   # CUDA (bf16)
    .venv/bin/python bench/finetune_gemma.py --run runs/demo --cpu-smoke                    # 3 steps on CPU

Needs ``<run>/models/gemma`` (the source stage) and ``<run>/curated``. Writes
``bench/results/finetune_gemma_<cuda|cpu_smoke>.json``. Without CUDA only ``--cpu-smoke`` runs: the full recipe
processes ~1.2M tokens, weeks of this 2-core CPU's time at the demo's measured step rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

from finetune.config import DataConfig, LoraConfig  # noqa: E402
from finetune.lora import LoraRecipe  # noqa: E402


def recipe_config(args: argparse.Namespace, smoke: bool) -> LoraConfig:
    """The full recipe (GPU) or its smoke version (CPU): same code, fewer and shorter steps."""
    data = DataConfig(domains=[args.domain], seq_len=64 if smoke else 512, eval_docs=4 if smoke else 200,
                      eval_max_chars=400 if smoke else 4000)  # fmt: skip
    return LoraConfig(
        base="run:gemma", output="bench-gemma-lora", data=data, rank=16, alpha=32, dropout=0.05,
        target_modules="all-linear", steps=3 if smoke else args.steps, batch_size=2 if smoke else 8,
        grad_accum=1 if smoke else 2, lr=2e-4, warmup_steps=1 if smoke else 20, eval_every=10_000,
        eval_batches=1 if smoke else 8, checkpoint_every=10_000, merge=False, resume=False,
        device="cpu" if smoke else "cuda",
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run dir with models/gemma and curated/")
    ap.add_argument("--domain", default="docs")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--cpu-smoke", action="store_true", help="3 short steps on CPU: checks the recipe end to end")
    args = ap.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: the full recipe needs a GPU; use --cpu-smoke to check the recipe on CPU")
    cfg = recipe_config(args, args.cpu_smoke)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        recipe = LoraRecipe(cfg, run_dir=args.run, out_dir=out).setup()
        recipe.train()
        m = recipe.save()
    keep = ("steps", "trainable_params", "total_params", "trainable_share", "train_tokens", "train_seconds",
            "tokens_per_s", "peak_memory_bytes", "peak_memory_kind", "bits_per_byte_before", "eval_bits_per_byte",
            "device", "dtype", "gradient_checkpointing")  # fmt: skip
    result = {"machine": machine(), "recipe": cfg.model_dump(), "seconds": time.perf_counter() - t0,
              **{k: m.get(k) for k in keep}}  # fmt: skip
    name = "cpu_smoke" if args.cpu_smoke else "cuda"
    path = ROOT / "bench" / "results" / f"finetune_gemma_{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result[k] for k in keep if k in result}, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
