"""LM-head row padding: padded calls return each real row's own logits, and batched greedy output stays batch-1's."""

from __future__ import annotations

import random

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.batch import BatchEngine
from serving.decode.engine import Engine
from serving.decode.head_rows import HeadPadding, head_row_plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_llama(vocab_size=64, hidden=32, layers=2, seed=9, max_positions=256)


def test_padding_keeps_each_rows_logits_and_shapes(model) -> None:
    x = torch.tensor([[5, 9, 2, 7, 1], [3, 3, 8, 0, 4], [1, 2, 3, 4, 5]])
    with torch.inference_mode():
        plain = model(input_ids=x).logits  # head input [3, 5, hidden]: 15 rows
        last = model(input_ids=x, logits_to_keep=1).logits  # [3, 1, hidden]: 3 rows
        pad = HeadPadding(model, {3: 16, 15: 16})
        try:
            padded, padded_last = model(input_ids=x).logits, model(input_ids=x, logits_to_keep=1).logits
        finally:
            pad.remove()
        after = model(input_ids=x, logits_to_keep=1).logits
    assert padded.shape == plain.shape and padded_last.shape == last.shape == (3, 1, 64)
    torch.testing.assert_close(padded, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(padded_last, last, rtol=1e-12, atol=1e-12)
    assert torch.equal(after, last) and not model.get_output_embeddings()._forward_pre_hooks  # removed


def test_small_heads_get_no_plan(model) -> None:
    assert head_row_plan(model, 16) == {}  # a 64 x 32 head: nothing to gain, nothing measured


def test_batched_greedy_with_padded_head_equals_batch1(model) -> None:
    rng = random.Random(2)
    requests = [{"prompt_ids": [rng.randrange(64) for _ in range(rng.randint(1, 30))],
                 "max_new_tokens": rng.randint(2, 20)} for _ in range(10)]  # fmt: skip
    ref = [Engine(model).generate(**r)[0] for r in requests]
    pad = HeadPadding(model, {r: 16 for r in range(2, 16)})  # every multi-row head call padded to 16 rows
    batch = BatchEngine(model, kv_budget_tokens=1024, block_size=8, max_batch=8, pad_head=False)
    try:
        streams = [batch.stream(**r) for r in requests]  # all queued at once: decode steps of up to 8 rows
        got = [s.run()[0] for s in streams]
        assert batch.snapshot()["decode_rows"] > batch.snapshot()["decode_steps"]
    finally:
        batch.close()
        pad.remove()
    assert got == ref
