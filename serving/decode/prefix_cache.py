"""KV-cache blocks with automatic prefix caching, the way vLLM manages them.

The KV cache is a pool of ``num_blocks`` blocks of ``block_size`` token slots
(:class:`serving.decode.batch_cache.PagedKV` holds the tensors). A sequence owns a block table; block ``i`` holds
its tokens ``[i*block_size, (i+1)*block_size)``. A *full* block is content-addressed by a hash chain,
``h_i = H(h_{i-1}, tokens of block i)``, so an equal hash means an equal whole prefix up to that block (vLLM's
automatic prefix caching). A new request reuses the longest chain of cached blocks of its prompt (always leaving at
least one prompt token to compute, for the logits) and computes only the rest. Blocks are reference-counted; a
released block that carries a hash stays cached and is evicted least recently used only when a fresh block is needed.

Accounting: a sequence is given every block it may need (prompt + max_tokens) when it is admitted, so the pool can
never run out mid-generation (no preemption, no out-of-memory); requests that do not fit wait.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


def block_hashes(tokens: Sequence[int], block_size: int) -> list[bytes]:
    """The hash chain of every full block of ``tokens`` (a partial last block has none)."""
    out, parent = [], b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = array("q", tokens[start : start + block_size]).tobytes()
        parent = hashlib.blake2b(parent + block, digest_size=16).digest()
        out.append(parent)
    return out


def blocks_for(n_tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``n_tokens`` token slots."""
    return -(-n_tokens // block_size)


@dataclass
class PrefixStats:
    """Counters since start: prompt tokens looked up and found (vLLM's prefix_cache_queries / prefix_cache_hits)."""

    queries: int = 0
    hits: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


class BlockManager:
    """Free list, reference counts and the hash -> block map of a pool of KV blocks.

    Args:
        num_blocks: blocks in the pool (the KV budget in tokens / ``block_size``).
        block_size: token slots per block; smaller = finer prefix reuse, more hashing and gather indices.
        prefix_caching: keep released full blocks addressable by their hash (off = plain paged allocation).
    """

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks, self.block_size, self.prefix_caching = num_blocks, block_size, prefix_caching
        self.ref = [0] * num_blocks
        self.hash_of: list[bytes | None] = [None] * num_blocks
        self.by_hash: dict[bytes, int] = {}
        self.fresh: list[int] = list(range(num_blocks - 1, -1, -1))  # never hashed, popped from the end
        self.evictable: OrderedDict[int, None] = OrderedDict()  # ref 0 but hashed: reusable content, LRU first
        self.stats = PrefixStats()

    @property
    def num_free(self) -> int:
        """Blocks a new sequence may take (fresh ones plus cached ones nobody references)."""
        return len(self.fresh) + len(self.evictable)

    @property
    def num_used(self) -> int:
        """Blocks referenced by live sequences."""
        return self.num_blocks - self.num_free

    def match(self, hashes: Sequence[bytes], prompt_len: int) -> list[int]:
        """Cached blocks for the longest prefix of ``hashes``, leaving at least the last prompt token to compute.

        Does not take the blocks; see :meth:`take`.
        """
        if not self.prefix_caching:
            return []
        limit = (prompt_len - 1) // self.block_size
        blocks = []
        for h in hashes[:limit]:
            b = self.by_hash.get(h)
            if b is None:
                break
            blocks.append(b)
        return blocks

    def can_take(self, cached: Sequence[int], n_new: int) -> bool:
        """Whether ``cached`` blocks plus ``n_new`` fresh ones fit now."""
        revived = sum(1 for b in cached if self.ref[b] == 0)
        return n_new <= self.num_free - revived

    def take(self, cached: Sequence[int], n_new: int, prompt_len: int) -> list[int]:
        """Reference ``cached`` and allocate ``n_new`` more; returns the block table. Counts the prefix lookup."""
        if not self.can_take(cached, n_new):
            raise RuntimeError(f"KV pool exhausted: need {n_new} blocks, {self.num_free} free")  # callers check first
        for b in cached:
            if self.ref[b] == 0:
                del self.evictable[b]
            self.ref[b] += 1
        table = list(cached) + [self._allocate() for _ in range(n_new)]
        self.stats.queries += prompt_len
        self.stats.hits += len(cached) * self.block_size
        return table

    def _allocate(self) -> int:
        if self.fresh:
            b = self.fresh.pop()
        else:
            b, _ = self.evictable.popitem(last=False)
            del self.by_hash[self.hash_of[b]]
            self.hash_of[b] = None
            self.stats.evictions += 1
        self.ref[b] = 1
        return b

    def register(self, table: Sequence[int], hashes: Sequence[bytes]) -> None:
        """Make the first ``len(hashes)`` blocks of ``table`` (now filled) findable by their hashes."""
        if not self.prefix_caching:
            return
        for b, h in zip(table, hashes, strict=False):
            if self.hash_of[b] is not None:
                continue  # already cached (a hit, or registered earlier)
            if h in self.by_hash:
                continue  # an identical block computed by another sequence is already cached; this one stays private
            self.hash_of[b] = h
            self.by_hash[h] = b

    def release(self, table: Sequence[int]) -> None:
        """Drop one reference to each block; unreferenced blocks become free (cached ones stay findable)."""
        for b in reversed(table):  # tail blocks first, so a prefix's head is evicted last
            self.ref[b] -= 1
            assert self.ref[b] >= 0, f"block {b} released twice"
            if self.ref[b] == 0:
                if self.hash_of[b] is not None:
                    self.evictable[b] = None
                else:
                    self.fresh.append(b)
