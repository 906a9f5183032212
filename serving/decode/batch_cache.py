"""A paged KV cache that Hugging Face causal LMs read and write through their ``past_key_values`` argument.

:class:`PagedKV` owns, per layer, one key and one value tensor of ``num_slots = num_blocks * block_size`` token slots
([slots, kv_heads, head_dim]), allocated once (the KV budget), so memory never grows with traffic. A sequence's token
``t`` lives in slot ``table[t // block_size] * block_size + t % block_size`` (its block table, see
:mod:`serving.decode.prefix_cache`).

One forward pass gets a :class:`BatchKV`: the slots its ``q`` new tokens per row are written to, and the slots each
row reads, right-aligned in a ``[B, L]`` index (shorter rows are padded on the left with slot 0 and masked out). The
model's attention calls ``update(k, v, layer)``: the new keys/values are written into the pool and the gathered
``[B, kv_heads, L, head_dim]`` keys/values come back, so every row sees exactly its own tokens, whatever the other
rows' lengths. Masks are built here (:func:`attention_masks`) and passed as 4D tensors (a dict per layer type for
models with sliding-window layers), so HF's own mask creation is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class PagedKV:
    """Key/value pools for every layer; a layer's pool is allocated on its first write (shape from the model)."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.num_slots = num_blocks * block_size
        self.keys: dict[int, torch.Tensor] = {}  # layer -> [slots, kv_heads, head_dim]
        self.values: dict[int, torch.Tensor] = {}

    def slots(self, table: Sequence[int], start: int, end: int) -> list[int]:
        """Pool slot of each token position in [start, end) of a sequence with block table ``table``."""
        bs = self.block_size
        return [table[t // bs] * bs + t % bs for t in range(start, end)]

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store new keys/values k, v [B, H, q, D] at ``slots`` [B*q] (row-major over B, then q)."""
        if layer not in self.keys:
            shape = (self.num_slots, k.shape[1], k.shape[3])
            self.keys[layer] = torch.zeros(shape, dtype=k.dtype, device=k.device)
            self.values[layer] = torch.zeros(shape, dtype=v.dtype, device=v.device)
        b, h, q, d = k.shape
        self.keys[layer].index_copy_(0, slots, k.transpose(1, 2).reshape(b * q, h, d))
        self.values[layer].index_copy_(0, slots, v.transpose(1, 2).reshape(b * q, h, d))

    def read(self, layer: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather keys/values for a [B, L] slot index; returns two [B, H, L, D] tensors."""
        b, length = index.shape
        flat = index.reshape(-1)
        k = self.keys[layer].index_select(0, flat).view(b, length, *self.keys[layer].shape[1:])
        v = self.values[layer].index_select(0, flat).view(b, length, *self.values[layer].shape[1:])
        return k.transpose(1, 2), v.transpose(1, 2)

    def bytes(self) -> int:
        """Bytes held by the pools allocated so far."""
        return sum(t.numel() * t.element_size() for t in (*self.keys.values(), *self.values.values()))


class BatchKV:
    """The ``past_key_values`` of one forward pass over rows of different lengths (see the module docstring).

    Args:
        pool: the paged KV store.
        write: slots of the new tokens, [B*q] (row-major).
        read: right-aligned slot index per row, [B, L] (L includes the new tokens).
        q: new tokens per row.
    """

    is_compileable = False

    def __init__(self, pool: PagedKV, write: torch.Tensor, read: torch.Tensor, q: int) -> None:
        self.pool, self.write_slots, self.read_index, self.q = pool, write, read, q

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        self.pool.write(layer_idx, self.write_slots, key_states, value_states)
        return self.pool.read(layer_idx, self.read_index)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.read_index.shape[1] - self.q


def build_batch(
    pool: PagedKV, rows: Sequence[tuple[Sequence[int], int, int]], device: torch.device
) -> tuple[BatchKV, torch.Tensor, torch.Tensor]:
    """The cache view, position ids [B, q] and validity mask [B, L] for one forward.

    rows: per sequence (block table, tokens already in the cache, new tokens q) with the same q for every row.
    """
    q, bs = rows[0][2], pool.block_size
    blocks = max(len(table) for table, _, _ in rows)
    tables = torch.tensor([list(t) + [0] * (blocks - len(t)) for t, _, _ in rows], dtype=torch.long)  # [B, blocks]
    lengths = torch.tensor([done + q for _, done, _ in rows], dtype=torch.long)  # [B]
    width = int(lengths.max())
    pos = torch.arange(width)[None, :] - (width - lengths)[:, None]  # [B, L]: token position, < 0 = left padding
    valid = pos >= 0
    p = pos.clamp_min(0)
    read = (tables.gather(1, p // bs) * bs + p % bs).masked_fill(~valid, 0)  # [B, L] pool slots
    view = BatchKV(pool, read[:, -q:].reshape(-1).to(device), read.to(device), q)
    return view, pos[:, -q:].to(device), valid.to(device)


def ragged_batch(
    pool: PagedKV, rows: Sequence[tuple[Sequence[int], int, int]], device: torch.device
) -> tuple[BatchKV, torch.Tensor, tuple[torch.Tensor, ...], list[int]]:
    """The cache view of one *packed* forward over rows with different numbers of new tokens (prompt chunks of several
    requests and one-token decode rows together).

    All new tokens form one sequence [1, T] (T = sum of every row's q); the keys are every row's whole context laid
    end to end [1, S]. Returns the view, position ids [1, T], (query row, query position, key row, key position) for
    :func:`ragged_masks`, and the index in T of each row's last new token (for ``logits_to_keep``).
    """
    write, read, q_row, q_pos, k_row, k_pos, last = [], [], [], [], [], [], []
    for r, (table, done, q) in enumerate(rows):
        end = done + q
        slots = pool.slots(table, 0, end)
        read += slots
        write += slots[done:]
        k_row += [r] * end
        k_pos += range(end)
        q_row += [r] * q
        q_pos += range(done, end)
        last.append(len(q_pos) - 1)
    t = [torch.tensor(x, dtype=torch.long, device=device) for x in (write, read, q_row, q_pos, k_row, k_pos)]
    view = BatchKV(pool, t[0], t[1][None], len(q_pos))
    return view, t[3][None], (t[2], t[3], t[4], t[5]), last


def ragged_masks(config: Any, q_row: torch.Tensor, q_pos: torch.Tensor, k_row: torch.Tensor, k_pos: torch.Tensor,
                 dtype: torch.dtype) -> Any:  # fmt: skip
    """4D masks [1, 1, T, S] for a packed forward: a query sees the keys of its own row at positions up to its own
    (and, in sliding-window layers, within the window). Same return convention as :func:`attention_masks`."""
    same = q_row[:, None] == k_row[None, :]
    dist = q_pos[:, None] - k_pos[None, :]  # [T, S]
    full = (same & (dist >= 0))[None, None]
    return _by_layer_type(config, full, lambda window: full & (dist < window)[None, None], dtype)


def attention_masks(config: Any, valid: torch.Tensor, q: int, dtype: torch.dtype) -> Any:
    """4D masks [B, 1, q, L] for right-aligned rows: causal, padding and (per layer type) sliding window.

    Returns a tensor, or a dict {layer type: mask} for models with sliding-window layers. Boolean (True = attend) for
    SDPA; additive floats for eager attention.
    """
    b, length = valid.shape
    q_idx = torch.arange(length - q, length, device=valid.device)[:, None]  # [q, 1]: query positions in the row
    kv_idx = torch.arange(length, device=valid.device)[None, :]  # [1, L]
    causal = kv_idx <= q_idx  # [q, L]
    full = valid[:, None, None, :] & causal[None, None]  # [B, 1, q, L]
    return _by_layer_type(config, full, lambda window: full & (q_idx - kv_idx < window)[None, None], dtype)


def _by_layer_type(config: Any, full: torch.Tensor, sliding: Any, dtype: torch.dtype) -> Any:
    """The full-attention mask, or {layer type: mask} with ``sliding(window)`` for sliding-window layers."""
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    unknown = types - {"full_attention", "sliding_attention"}
    if unknown:
        raise ValueError(f"batched decoding supports full and sliding-window attention layers, not {sorted(unknown)}")
    masks = {"full_attention": full}
    if "sliding_attention" in types:
        window = getattr(config, "sliding_window", None) or full.shape[-1] + 1
        masks["sliding_attention"] = sliding(window)
    if getattr(config, "_attn_implementation", "sdpa") == "eager":
        neg = torch.finfo(dtype).min
        masks = {k: torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, neg) for k, m in masks.items()}
    return masks if "sliding_attention" in types else masks["full_attention"]
