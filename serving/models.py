"""Load a local Hugging Face causal LM and its tokenizer onto the run-time device (CUDA bf16, else CPU fp32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from serving.quantize.methods import quantize_model
from tokenwise.device import pick_runtime


def runtime_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when available (or asked for), else CPU with fp32."""
    rt = pick_runtime(device)
    return rt.device, rt.dtype


def load_model(
    path: str | Path, device: str = "auto", quantization: str = "none", dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """An HF causal LM from a local directory, in eval mode on the run-time device, optionally quantized.

    ``quantization``: one of :data:`serving.quantize.methods.QUANTIZERS` (``none``, ``int8_weight_only``,
    ``int8_dynamic``, ``int4_weight_only``).
    """
    from transformers import AutoModelForCausalLM  # heavy: deferred until used

    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: no config.json; expected an HF model directory (save_pretrained output)")
    dev, default_dtype = runtime_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(p), dtype=dtype or default_dtype).to(dev).eval()
    if quantization != "none":

        quantize_model(model, quantization)
    return model


def load_tokenizer(path: str | Path) -> Any:
    """The HF tokenizer saved in a model (or tokenizer) directory."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(str(p))
