"""Tiny Llama models for tests and benchmarks until the real target/draft models exist in a run directory."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(
    vocab_size: int = 96,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    max_positions: int = 512,
) -> LlamaForCausalLM:
    """A randomly initialised Llama (float64 by default so greedy ties cannot flip between code paths)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    # a wider init than the default makes distributions peaked enough to be interesting for drafting
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return model.to(dtype).eval()
