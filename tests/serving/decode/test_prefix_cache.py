"""Block hashing and the block manager: chained hashes, longest-prefix match, reference counts, LRU eviction."""

from __future__ import annotations

import pytest

from serving.decode.prefix_cache import BlockManager, block_hashes, blocks_for


def test_hash_chain_names_whole_prefixes() -> None:
    a = block_hashes(list(range(40)), 8)
    assert len(a) == 5  # full blocks only
    b = block_hashes(list(range(16)) + [99] + list(range(17, 40)), 8)
    assert a[:2] == b[:2] and all(x != y for x, y in zip(a[2:], b[2:], strict=True))  # a change spreads down the chain
    same_block_other_prefix = block_hashes([7] * 8 + list(range(8, 16)), 8)
    assert same_block_other_prefix[1] != a[1]  # equal tokens in block 1, different history
    assert blocks_for(17, 8) == 3 and blocks_for(16, 8) == 2


def test_match_leaves_one_prompt_token_and_stops_at_the_first_miss() -> None:
    bm = BlockManager(16, 4)
    prompt = list(range(12))
    hashes = block_hashes(prompt, 4)
    table = bm.take([], 3, len(prompt))
    bm.register(table, hashes)
    assert bm.match(hashes, len(prompt)) == table[:2]  # all 12 cached, but the last token must be computed
    assert bm.match(hashes, 13) == table
    other = block_hashes([99] + prompt[1:], 4)
    assert bm.match(other, 12) == []
    assert BlockManager(16, 4, prefix_caching=False).match(hashes, 13) == []


def test_reference_counts_keep_shared_blocks_and_evict_least_recently_used() -> None:
    bm = BlockManager(4, 2)
    p1 = [1, 2, 3, 4]
    t1 = bm.take([], 2, 4)
    bm.register(t1, block_hashes(p1, 2))
    t2 = bm.take(bm.match(block_hashes(p1 + [5], 2), 5), 1, 5)  # shares both of p1's blocks
    assert t2[:2] == t1 and bm.num_used == 3 and bm.stats.hits == 4 and bm.stats.queries == 9
    bm.release(t1)
    assert bm.num_used == 3  # still referenced by t2
    bm.release(t2)
    assert bm.num_used == 0 and bm.num_free == 4
    # cached blocks stay findable until fresh blocks run out; then the least recently used go first
    t3 = bm.take([], 2, 4)
    assert bm.match(block_hashes(p1 + [5], 2), 5) == t1
    t4 = bm.take([], 2, 4)
    assert set(t3 + t4) == set(range(4)) and bm.stats.evictions == 2
    assert bm.match(block_hashes(p1 + [5], 2), 5) == []
    with pytest.raises(RuntimeError, match="exhausted"):
        bm.take([], 1, 1)


def test_a_duplicate_block_stays_private_and_returns_to_the_free_list() -> None:
    bm = BlockManager(8, 2)
    hashes = block_hashes([1, 2, 3, 4], 2)
    a, b = bm.take([], 2, 4), bm.take([], 2, 4)  # two identical prompts computed at the same time
    bm.register(a, hashes)
    bm.register(b, hashes)
    assert bm.match(hashes, 5) == a
    bm.release(b)
    bm.release(a)
    assert bm.num_free == 8 and len(bm.evictable) == 2 and len(bm.fresh) == 6
