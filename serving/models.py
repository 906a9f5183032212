"""Load a local Hugging Face causal LM and its tokenizer onto the run-time device (CUDA bf16, else CPU fp32).

A dir with ``kept_vocab.json`` holds a local-vocabulary model (a compact model or a drafter trained on a kept
vocabulary, see :mod:`serving.quantize.compact`); it is loaded wrapped so that it takes and predicts the tokenizer's
global ids like any other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from serving.quantize.compact import to_global
from serving.quantize.methods import quantize_model
from tokenwise.device import pick_runtime
from tokenwise.vocab import KeptVocab


def runtime_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when available (or asked for), else CPU with fp32."""
    rt = pick_runtime(device)
    return rt.device, rt.dtype


def load_model(
    path: str | Path, device: str = "auto", quantization: str = "none", dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """An HF causal LM from a local directory, in eval mode on the run-time device, optionally quantized.

    ``quantization``: one of :data:`serving.quantize.methods.QUANTIZERS` (``none``, ``int8_weight_only``,
    ``int8_dynamic``, ``int4_weight_only``). A local-vocabulary dir (``kept_vocab.json``) is wrapped to global ids
    after quantization (its trimmed head is quantized like any linear layer).
    """
    from transformers import AutoModelForCausalLM  # heavy: deferred until used

    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: no config.json; expected an HF model directory (save_pretrained output)")
    dev, default_dtype = runtime_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(p), dtype=dtype or default_dtype).to(dev).eval()
    if quantization != "none":
        quantize_model(model, quantization)
    kept = KeptVocab.find(p)
    return to_global(model, kept) if kept is not None else model


def load_tokenizer(path: str | Path) -> Any:
    """The HF tokenizer saved in a model (or tokenizer) directory."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(str(p))
