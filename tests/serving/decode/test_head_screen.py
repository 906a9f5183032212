"""The screened LM head: its greedy token is the fp32 head's, always; it screens only when and where it is asked."""

from __future__ import annotations

import random
import threading
from functools import partial

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.batch import BatchEngine
from serving.decode.engine import Engine
from serving.decode.head_screen import ScreenedHead, install_head_screen
from serving.decode.speculative import PromptLookup

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _head(vocab: int = 6000, hidden: int = 96, seed: int = 0) -> torch.nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(hidden, vocab, bias=False)
    w = torch.randn(vocab, hidden, generator=gen) * 0.05
    w[: vocab // 50] *= 4  # some rows of larger norm (frequent tokens), as in trained heads
    lin.weight.data = w
    return lin


def _hidden(n: int, hidden: int = 96, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=gen)
    h[:, [3, 17, 40]] *= 40  # a few massive dimensions, like Gemma's final hidden state
    return h


def test_screened_argmax_and_candidate_logits_equal_the_fp32_heads() -> None:
    lin = _head()
    head = ScreenedHead(lin, torch.tensor([3, 17, 40, 41, 60, 61, 62, 63]))  # three true outliers + five others
    h = _hidden(300)
    with torch.inference_mode():
        full = lin(h)
        for start, rows in [(0, 1), (1, 2), (3, 7), (10, 16), (26, 17), (43, 40), (83, 217)]:
            x = h[start : start + rows]
            with head.screening():
                got = head(x[None])[0]  # [1, rows, D] in, as the model calls it
            ref = full[start : start + rows]
            assert torch.equal(got.argmax(-1), ref.argmax(-1))
            seen = torch.isfinite(got)
            assert seen.sum(1).max() < lin.out_features // 4  # a screen, not the whole head
            torch.testing.assert_close(got[seen], ref[seen], rtol=1e-5, atol=1e-5)
            assert (ref[~seen] <= ref.amax(1, keepdim=True).expand_as(ref)[~seen]).all()
    assert head.stats["screened_rows"] == 300 and head.stats["full_rows"] == 0


def test_near_ties_are_decided_by_the_exact_logits() -> None:
    lin = _head(vocab=4000, seed=3)
    h = _hidden(64, seed=4)
    with torch.inference_mode():
        best = lin(h).argmax(1)
        for i, b in enumerate(best.tolist()):  # a rival row per query, 1e-5 below the winner (far inside the bound)
            rival = (i * 37 + 11) % lin.out_features
            if rival == b:
                continue
            lin.weight[rival] = lin.weight[b] - 1e-5 * h[i] / h[i].norm() ** 2
        head = ScreenedHead(lin, torch.tensor([3, 17, 40, 5]))
        full = lin(h)
        with head.screening():
            got = head(h)
    assert torch.equal(got.argmax(1), full.argmax(1))


def test_screening_is_off_by_default_and_per_thread() -> None:
    lin = _head(vocab=3000)
    head = ScreenedHead(lin, torch.tensor([3, 17, 40]))
    h = _hidden(4)
    other: list[torch.Tensor] = []
    with torch.inference_mode():
        assert torch.equal(head(h), lin(h))
        with head.screening():
            t = threading.Thread(target=lambda: other.append(head(h)))
            t.start()
            t.join()
            screened = head(h)
        assert torch.equal(head(h), lin(h))
    torch.testing.assert_close(other[0], lin(h), rtol=1e-4, atol=1e-4)  # another thread kept the full product
    assert torch.isinf(screened).any() and not torch.isinf(other[0]).any()


def test_the_bound_is_checked_against_the_fp32_product() -> None:
    lin = _head()
    head = ScreenedHead(lin, torch.tensor([3, 17, 40, 41, 60, 61, 62, 63]))
    h = _hidden(64)
    assert head.bound_holds(h) and head.bound_holds(h, rows_per_call=1)
    head.half_l1.zero_()  # a bound that forgets the activations' quantization error
    head.s_w.zero_()
    assert not head.bound_holds(h)


def test_no_install_when_the_bound_fails(monkeypatch) -> None:
    model = tiny_llama(vocab_size=2048, hidden=64, layers=1, seed=3, dtype=torch.float32, max_positions=64)
    plain = model.get_output_embeddings()
    monkeypatch.setattr(ScreenedHead, "bound_holds", lambda self, h, rows_per_call=8: False)
    assert install_head_screen(model, min_vocab=1024) is None and model.get_output_embeddings() is plain


def test_install_only_where_it_helps_and_once() -> None:
    small = tiny_llama(vocab_size=64, hidden=32, layers=1, seed=1, max_positions=64)
    assert install_head_screen(small) is None  # a 64-row head: nothing to gain
    model = tiny_llama(vocab_size=2048, hidden=64, layers=1, seed=2, dtype=torch.float32, max_positions=64)
    head = install_head_screen(model, min_vocab=1024)
    assert isinstance(head, ScreenedHead) and model.get_output_embeddings() is head
    assert install_head_screen(model, min_vocab=1024) is head
    assert head.weight is head.linear.weight and head.bias is None and len(head.outlier_dims) == 8
    ids = torch.tensor([[5, 9, 2, 7, 1]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with head.screening():
            screened = model(input_ids=ids).logits
    assert torch.equal(plain.argmax(-1), screened.argmax(-1))
    assert torch.isinf(screened).sum() > plain.numel() // 2


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    m = tiny_llama(vocab_size=4096, hidden=64, layers=2, seed=5, dtype=torch.float32, max_positions=256)
    install_head_screen(m, min_vocab=1024)  # the engine's own call then finds it installed
    return m


def _requests(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt_ids": [rng.randrange(4096) for _ in range(rng.randint(1, 30))],
             "max_new_tokens": rng.randint(2, 16)} for _ in range(n)]  # fmt: skip


def test_batched_greedy_through_the_screen_equals_the_full_head(model) -> None:
    requests = _requests(10, seed=6)
    ref = [Engine(model).generate(**r)[0] for r in requests]  # the Engine never screens
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, max_batch=8, pad_head=False)
    try:
        streams = [batch.stream(**r, scores=False) for r in requests]
        got = [s.run()[0] for s in streams]
        counters = batch.snapshot()
    finally:
        batch.close()
    assert got == ref
    assert counters["screened_passes"] > 0 and counters["decode_rows"] > counters["decode_steps"]
    assert model.get_output_embeddings().stats["full_rows"] == 0


@pytest.mark.parametrize("pack_prefill", [True, False])
def test_prompts_longer_than_a_chunk_through_the_screen(model, pack_prefill) -> None:
    """Passes that keep no logits (a prompt chunk mid-prompt) and chunks beside decode rows, screened."""
    requests = [{"prompt_ids": [(7 * i + j) % 4096 for j in range(40 + 9 * i)], "max_new_tokens": 6} for i in range(4)]
    ref = [Engine(model).generate(**r)[0] for r in requests]
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, max_batch=4, pad_head=False, prefill_chunk=16,
                        pack_prefill=pack_prefill)  # fmt: skip
    try:
        got = [s.run()[0] for s in [batch.stream(**r, scores=False) for r in requests]]
        counters = batch.snapshot()
    finally:
        batch.close()
    assert got == ref and counters["screened_passes"] > 0


def test_prompt_lookup_verification_through_the_screen_equals_the_full_head(model) -> None:
    base = [7, 8, 9, 10, 11, 12]
    requests = [{"prompt_ids": base * 4 + [i], "max_new_tokens": 12} for i in range(4)]
    ref = [Engine(model).generate(**r)[0] for r in requests]
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, max_batch=4, pad_head=False,
                        drafter=partial(PromptLookup, 3), k=3, speculate_max_batch=1)  # fmt: skip
    try:
        got = [batch.stream(**r, scores=False).run() for r in requests]  # one at a time: each speculates
        counters = batch.snapshot()
    finally:
        batch.close()
    assert [g[0] for g in got] == ref
    assert counters["spec_steps"] > 0 and counters["screened_passes"] >= counters["spec_steps"]


def test_sampling_and_scores_get_the_full_head(model) -> None:
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, max_batch=4, pad_head=False)
    try:
        scored = batch.stream([1, 2, 3, 4], max_new_tokens=6)  # scores=True: log-probs need every logit
        toks, _ = scored.run()
        sampled = batch.stream([5, 6, 7], max_new_tokens=6, temperature=0.8, seed=1, scores=False).run()
        counters = batch.snapshot()
    finally:
        batch.close()
    assert counters["screened_passes"] == 0
    assert len(toks) == 6 and all(lp == lp and lp <= 0 for lp in scored.logprobs)  # finite log-probs
    assert len(sampled[0]) == 6
