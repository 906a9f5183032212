"""Attention of a packed forward row by row, so packing prompts with decode rows costs no cross-row attention.

A packed forward (:func:`serving.decode.batch_cache.ragged_batch`) puts every row's new tokens in one sequence [1, T]
and every row's keys end to end [1, S]. One dense SDPA over it computes T x S scores, most of them masked out (a
111-token prompt packed with 8 decode rows at context 150: 156k scores for 7k useful ones). :func:`ragged_attention`
instead runs SDPA per prompt chunk (its own queries over its own keys, causal) and once for all decode rows together
([B, 1] over their right-aligned keys), then scatters the outputs back into packed order.

It is registered with transformers as the attention implementation ``tokenwise_ragged`` (SDPA masks); a model switched
to it (:func:`use_ragged_attention`, only from ``sdpa``) runs plain ``sdpa_attention_forward`` whenever the call
carries no :class:`RaggedLayout` (``ragged=`` keyword of the model call), so its other users see SDPA unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "tokenwise_ragged"


@dataclass
class RaggedLayout:
    """Where each row's queries and keys sit in a packed forward.

    Args:
        chunks: per multi-token row (query start, query count, key start, key count).
        dec_q: [Bd] query index of each one-token row.
        dec_keys: [Bd, L] key index of each one-token row's keys, right-aligned (left padding points at key 0).
        dec_valid: [Bd, L] real keys (False = padding).
    """

    chunks: list[tuple[int, int, int, int]]
    dec_q: torch.Tensor | None
    dec_keys: torch.Tensor | None
    dec_valid: torch.Tensor | None
    _masks: dict[Any, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[tuple[int, int]], device: torch.device) -> RaggedLayout:
        """Layout of packed rows given as (cached tokens, new tokens), in packing order."""
        chunks, dec_q, dec_k, dec_len = [], [], [], []
        qs = ks = 0
        for done, q in rows:
            kl = done + q
            if q > 1:
                chunks.append((qs, q, ks, kl))
            else:
                dec_q.append(qs)
                dec_k.append(ks)
                dec_len.append(kl)
            qs += q
            ks += kl
        if not dec_q:
            return cls(chunks, None, None, None)
        width = max(dec_len)
        lengths = torch.tensor(dec_len)[:, None]
        col = torch.arange(width)[None, :] - (width - lengths)  # [Bd, L]: key position in its row, < 0 = padding
        valid = col >= 0
        keys = (torch.tensor(dec_k)[:, None] + col.clamp_min(0)).masked_fill(~valid, 0)
        return cls(chunks, torch.tensor(dec_q, device=device), keys.to(device), valid.to(device))

    def chunk_mask(self, i: int, window: int | None, device: torch.device) -> torch.Tensor:
        """[1, 1, q, k] causal (and sliding-window) mask of chunk ``i``; its queries are the last q of its k keys."""
        key = (i, window)
        if key not in self._masks:
            _, q, _, k = self.chunks[i]
            qp = torch.arange(k - q, k, device=device)[:, None]
            kp = torch.arange(k, device=device)[None, :]
            m = kp <= qp
            if window:
                m = m & (qp - kp < window)
            self._masks[key] = m[None, None]
        return self._masks[key]

    def decode_mask(self, window: int | None) -> torch.Tensor:
        """[Bd, 1, 1, L] mask of the one-token rows (their query is the last key of the row)."""
        key = ("dec", window)
        if key not in self._masks:
            m = self.dec_valid
            if window:
                width = m.shape[1]
                dist = torch.arange(width - 1, -1, -1, device=m.device)[None, :]  # query position - key position
                m = m & (dist < window)
            self._masks[key] = m[:, None, None, :]
        return self._masks[key]


def ragged_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    ragged: RaggedLayout | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention interface: per-row SDPA over a packed forward (query [1, H, T, D], key/value
    [1, Hkv, S, D]); returns [1, T, H, D]. Without ``ragged``: ``sdpa_attention_forward``."""
    if ragged is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, sliding_window=sliding_window,
                                      **kwargs)  # fmt: skip
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    for i, (qs, ql, ks, kl) in enumerate(ragged.chunks):
        mask = ragged.chunk_mask(i, sliding_window, query.device)
        o, _ = sdpa_attention_forward(module, query[:, :, qs : qs + ql], key[:, :, ks : ks + kl],
                                      value[:, :, ks : ks + kl], mask, **kwargs)  # fmt: skip
        out[:, qs : qs + ql] = o
    if ragged.dec_q is not None:
        q = query[0, :, ragged.dec_q].transpose(0, 1)[:, :, None]  # [Bd, H, 1, D]
        k = key[0][:, ragged.dec_keys].transpose(0, 1)  # [Bd, Hkv, L, D]
        v = value[0][:, ragged.dec_keys].transpose(0, 1)
        o, _ = sdpa_attention_forward(module, q, k, v, ragged.decode_mask(sliding_window), **kwargs)  # [Bd, 1, H, D]
        out[0, ragged.dec_q] = o[:, 0]
    return out, None


def use_ragged_attention(model: torch.nn.Module) -> bool:
    """Switch ``model`` from SDPA to ``tokenwise_ragged`` (registered here); False (unchanged) for other
    implementations, whose packed forwards then use dense masks."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    impl = getattr(cfg, "_attn_implementation", None)
    if impl == NAME:
        return True
    if impl != "sdpa":
        return False
    AttentionInterface.register(NAME, ragged_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.config._attn_implementation = NAME
    cfg._attn_implementation = NAME
    return True
