"""KV-cached generation matches full recomputation; streams, stop tokens, sampling knobs and request checks."""

from __future__ import annotations

import math

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.engine import Engine
from serving.decode.generate import Stream, probs_from_logits, target_stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_llama(vocab_size=40, hidden=32, layers=2, seed=5, max_positions=64)


def _greedy_no_cache(model, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(prompt) :]


def test_cached_greedy_equals_full_recompute(model) -> None:
    for prompt in ([1], [3, 4, 5], [7, 8, 9, 10, 11, 12, 13]):
        tokens, stats = Stream(target_stream(model, prompt, 15)).run()
        assert tokens == _greedy_no_cache(model, prompt, 15)
        assert stats["new_tokens"] == 15 == stats["target_forward_passes"]
        assert stats["finish_reason"] == "length"


def test_stream_chunks_logprobs_and_stop(model) -> None:
    engine = Engine(model)
    full, _ = engine.generate([2, 3], max_new_tokens=12)
    stream = engine.stream([2, 3], max_new_tokens=12, stop_ids=[full[5]])
    chunks = list(stream)
    assert [t for c in chunks for t in c] == full[: full.index(full[5]) + 1] == stream.tokens
    assert stream.stats["finish_reason"] == "stop"
    assert len(stream.logprobs) == len(stream.tokens) == len(stream.entropies)
    assert all(lp <= 0 for lp in stream.logprobs) and all(e >= 0 for e in stream.entropies)


def test_sampling_is_seeded_and_tiny_top_p_is_greedy(model) -> None:
    engine = Engine(model)
    a, _ = engine.generate([1, 2], max_new_tokens=10, temperature=1.0, seed=3)
    b, _ = engine.generate([1, 2], max_new_tokens=10, temperature=1.0, seed=3)
    greedy, _ = engine.generate([1, 2], max_new_tokens=10)
    nucleus, _ = engine.generate([1, 2], max_new_tokens=10, temperature=1.0, top_p=1e-6, seed=4)
    assert a == b and nucleus == greedy


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    probs = probs_from_logits(torch.tensor([0.5, 0.3, 0.2]).log(), 1.0, 0.7)
    assert torch.allclose(probs, torch.tensor([0.625, 0.375, 0.0]))


def test_bad_requests_name_the_limit(model) -> None:
    engine = Engine(model)
    with pytest.raises(ValueError, match="context of 64"):
        engine.generate(list(range(60)), max_new_tokens=10)
    with pytest.raises(ValueError, match="mode must be one of"):
        engine.generate([1], mode="beam")
    with pytest.raises(ValueError, match="needs a draft model"):
        engine.generate([1], mode="speculative")
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        engine.generate([])


def test_engine_estimates_measured_speedup_after_a_target_request(model) -> None:
    engine = Engine(model, draft=model)
    _, st = engine.generate([1, 2, 3], max_new_tokens=10, mode="speculative", k=3)
    assert st["measured_speedup"] is None
    engine.generate([1, 2, 3], max_new_tokens=10)
    _, st = engine.generate([1, 2, 3], max_new_tokens=10, mode="speculative", k=3)
    assert st["measured_speedup"] > 0 and st["alpha"] == 1.0  # the draft is the target: everything accepted


def test_entropy_of_floor_and_masked_logits() -> None:
    """The entropy of a compact model's scattered logits (a far-negative floor) and of a screened head's (-inf
    outside the candidates): the same value as over the real entries alone, never NaN."""
    from serving.decode.generate import entropy, token_logprobs

    real = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    want = -(real.log_softmax(-1).exp() * real.log_softmax(-1)).sum(-1)
    for fill in (-1e4, float("-inf")):
        wide = torch.cat([real, torch.full((3, 5000), fill)], dim=1)
        assert torch.allclose(entropy(wide), want, atol=1e-5), fill
    assert torch.allclose(entropy(torch.zeros(2, 64)), torch.full((2,), math.log(64)))
    chosen, ent = token_logprobs(torch.cat([real, torch.full((3, 10), float("-inf"))], 1), [1, 2, 3])
    assert all(math.isfinite(e) for e in ent) and chosen == real.log_softmax(-1)[[0, 1, 2], [1, 2, 3]].tolist()
