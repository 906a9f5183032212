"""Loading a local base model and its tokenizer with the checks every recipe needs before training starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


class BaseModelError(ValueError):
    """A base model or tokenizer that cannot be fine-tuned as configured."""


def check_base_dir(path: str) -> dict:
    """The ``config.json`` of a local HF causal-LM dir; a clear error when it is missing or not a causal LM."""
    p = Path(path)
    if not p.is_dir():
        raise BaseModelError(f"{path}: base model dir not found; point base at a local Hugging Face model dir")
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        raise BaseModelError(f"{path}: no config.json; not a Hugging Face model dir")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    from transformers import AutoConfig  # heavy: deferred until used
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES  # heavy: deferred until used

    model_type = cfg.get("model_type")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise BaseModelError(
            f"{path}: model_type {model_type!r} is not a causal LM known to AutoModelForCausalLM "
            "(e.g. llama, qwen2, gpt2)"
        )
    AutoConfig.from_pretrained(path, local_files_only=True)
    return cfg


def load_tokenizer(path: str):
    """A local tokenizer via AutoTokenizer, with a pad token (EOS) when it has none."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    if not Path(path).is_dir():
        raise BaseModelError(f"{path}: tokenizer dir not found")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise BaseModelError(f"{path}: not a loadable tokenizer dir ({e})") from e
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, dtype: torch.dtype = torch.float32, device: torch.device | None = None):
    """``AutoModelForCausalLM`` from a checked local dir (never downloads)."""
    from transformers import AutoModelForCausalLM  # heavy: deferred until used

    check_base_dir(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device) if device is not None else model


def max_positions(model) -> int:
    """The longest sequence the model's position scheme allows (inf when unbounded)."""
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return math.inf


def check_compatible(model, tokenizer, seq_len: int, where: str) -> None:
    """Tokenizer ids must fit the embedding table and ``seq_len`` the position range."""
    n_emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_emb:
        raise BaseModelError(
            f"{where}: tokenizer has {len(tokenizer)} tokens but the model embeds only {n_emb}; "
            "use the model's own tokenizer or `tokenwise finetune adapt` to move it onto a new one"
        )
    limit = max_positions(model)
    if seq_len > limit:
        raise BaseModelError(f"{where}: data.seq_len {seq_len} exceeds the model's maximum of {limit} positions")


def count_params(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
