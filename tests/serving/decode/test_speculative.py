"""Speculative decoding is exact: greedy equals target greedy, sampling keeps the target's distribution."""

from __future__ import annotations

import copy

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.engine import Engine
from serving.decode.generate import Stream, probs_from_logits, target_stream
from serving.decode.speculative import (
    AutoOff,
    DraftModel,
    PromptLookup,
    SpecCosts,
    expected_tokens,
    measure_costs,
    predicted_speedup,
    predicted_speedup_of_steps,
    rejection_sample,
    speculative_stream,
)

VOCAB = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def target() -> torch.nn.Module:
    return tiny_llama(vocab_size=VOCAB, hidden=32, layers=2, seed=0)


@pytest.fixture(scope="module")
def drafts(target: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """A close draft (target plus noise: many acceptances and some rejections) and an unrelated one."""
    close = copy.deepcopy(target)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in close.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.01)
    return {"close": close, "unrelated": tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=7)}


def _prompts(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(n):
        base = torch.randint(1, VOCAB, (4 + i % 5,), generator=g).tolist()
        out.append(base * (1 + i % 3))  # repeats give prompt lookup something to find
    return out


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square goodness of fit; bins with expected count < 5 are pooled."""
    expected = probs.double() * counts.sum()
    small = expected < 5
    if small.any():
        counts = torch.cat([counts[~small].double(), counts[small].double().sum().reshape(1)])
        expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = expected > 0
    stat = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), stat / 2.0))


@pytest.mark.parametrize("which", ["close", "unrelated", "prompt_lookup"])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_greedy_speculative_equals_target_greedy(target, drafts, which: str, k: int) -> None:
    """Token for token over many prompts, for both drafters and several k; stats add up."""
    for prompt in _prompts(6):
        want, _ = Stream(target_stream(target, prompt, 24)).run()
        drafter = PromptLookup(3) if which == "prompt_lookup" else DraftModel(drafts[which])
        got, st = Stream(speculative_stream(target, drafter, prompt, 24, k=k)).run()
        assert got == want
        assert st["num_accepted_draft_tokens"] + st["num_rejected_draft_tokens"] == st["num_draft_tokens"]
        # one prefill plus one verify pass per step; each pass emits its accepted drafts plus one target token
        assert st["new_tokens"] == st["num_accepted_draft_tokens"] + st["target_forward_passes"]
        assert sum(st["acceptance_histogram"]) == st["num_accepted_draft_tokens"]
        assert sum(st["proposed_per_position"]) == st["num_draft_tokens"]
        if which != "prompt_lookup":
            assert st["draft_forward_passes"] == st["num_draft_tokens"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_speculative_on_cuda(target, drafts, dtype) -> None:
    """The same code on a GPU: fp64 greedy is token-exact; bf16 (the serving dtype) runs, and seeded sampling on the
    GPU generator reproduces itself."""
    t = copy.deepcopy(target).to("cuda", dtype)
    d = DraftModel(copy.deepcopy(drafts["close"]).to("cuda", dtype))
    for prompt in _prompts(3):
        want, _ = Stream(target_stream(t, prompt, 24)).run()
        got, st = Stream(speculative_stream(t, d, prompt, 24, k=4)).run()
        assert st["new_tokens"] == 24 and st["num_draft_tokens"] > 0
        if dtype == torch.float64:
            assert got == want
    eng = Engine(t, d.model)
    a, _ = eng.stream(_prompts(1)[0], 16, temperature=1.0, mode="speculative", seed=5).run()
    b, _ = eng.stream(_prompts(1)[0], 16, temperature=1.0, mode="speculative", seed=5).run()
    assert a == b


def test_close_draft_is_accepted_often_and_unrelated_rarely(target, drafts) -> None:
    prompt = _prompts(1)[0]
    _, close = Stream(speculative_stream(target, DraftModel(drafts["close"]), prompt, 40, k=4)).run()
    _, far = Stream(speculative_stream(target, DraftModel(drafts["unrelated"]), prompt, 40, k=4)).run()
    assert close["alpha"] > 0.6 > far["alpha"]
    assert close["target_forward_passes"] < far["target_forward_passes"]


def test_adaptive_k_and_stop_tokens_keep_greedy_exact(target, drafts) -> None:
    for prompt in _prompts(4):
        want, _ = Stream(target_stream(target, prompt, 30)).run()
        stop = want[10]
        want_stopped = want[: want.index(stop) + 1]
        got, st = Stream(
            speculative_stream(target, DraftModel(drafts["close"]), prompt, 30, k=2, stop_ids=[stop], adaptive_k=True)
        ).run()
        assert got == want_stopped and st["finish_reason"] == "stop"


def _random_pq(n: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n + 1, vocab, generator=g, dtype=torch.float64) * 1.5, -1)
    q = torch.softmax(torch.randn(n, vocab, generator=g, dtype=torch.float64) * 1.5, -1)
    return p, q


def _first_token_counts(p, q, samples: int, sampler, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(p.shape[1])
    n = p.shape[0] - 1
    for _ in range(samples):
        drafts = [int(torch.multinomial(q[i], 1, generator=g)) for i in range(n)] if q is not None else [0] * n
        n_acc, nxt = sampler(p, q, drafts, g)
        counts[drafts[0] if n_acc > 0 else nxt] += 1
    return counts


def test_rejection_sampler_keeps_target_distribution() -> None:
    """First emitted token ~ p[0] exactly (chi-square), for a model draft q and a deterministic proposal."""
    p, q = _random_pq(n=3, vocab=6, seed=0)
    counts = _first_token_counts(p, q, 4000, rejection_sample, seed=1)
    assert chi_square_pvalue(counts, p[0]) > 1e-3
    counts = _first_token_counts(p, None, 4000, rejection_sample, seed=2)  # proposal: always token 0
    assert chi_square_pvalue(counts, p[0]) > 1e-3


def test_chi_square_detects_a_biased_sampler() -> None:
    """The statistical test has power: always accepting the draft yields q's distribution and fails it."""
    p, q = _random_pq(n=3, vocab=6, seed=0)

    def always_accept(p, q, drafts, g):
        return len(drafts), int(torch.multinomial(p[-1], 1, generator=g))

    counts = _first_token_counts(p, q, 4000, always_accept, seed=1)
    assert chi_square_pvalue(counts, p[0]) < 1e-6


@pytest.mark.parametrize("mode", ["speculative", "prompt_lookup"])
def test_sampling_end_to_end_matches_target_distribution(mode: str) -> None:
    """On a tiny model the second token (the first one that goes through verification) has the target's marginal."""
    vocab, temp, top_p = 10, 1.3, 0.95
    target = tiny_llama(vocab_size=vocab, hidden=16, layers=1, seed=11)
    draft = tiny_llama(vocab_size=vocab, hidden=16, layers=1, seed=12)
    prompt = [1, 2, 3, 1, 2, 3, 1, 2]
    with torch.inference_mode():
        p1 = probs_from_logits(target(torch.tensor([prompt])).logits[0, -1], temp, top_p)
        seqs = torch.tensor([prompt + [t] for t in range(vocab)])
        p2 = probs_from_logits(target(seqs).logits[:, -1], temp, top_p)  # [V, V]: p(t2 | t1)
    marginal = (p1[:, None] * p2).sum(0)
    engine = Engine(target, draft, prompt_lookup_ngram=2)
    counts = torch.zeros(vocab)
    drafted = 0
    for seed in range(800):
        toks, st = engine.generate(prompt, max_new_tokens=3, temperature=temp, top_p=top_p, mode=mode, k=1, seed=seed)
        counts[toks[1]] += 1
        drafted += st["num_draft_tokens"] > 0
    assert drafted > 200  # the verify path was exercised
    assert chi_square_pvalue(counts, marginal) > 1e-3


def test_speedup_formula() -> None:
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert predicted_speedup(0.8, 4, 0.0) == pytest.approx((1 - 0.8**5) / 0.2)
    assert predicted_speedup(0.8, 4, 0.1) == pytest.approx((1 - 0.8**5) / 0.2 / 1.4)
    # the verify pass is not free: v = 1.3 plain steps
    assert predicted_speedup(0.8, 4, 0.1, v=1.3) == pytest.approx((1 - 0.8**5) / 0.2 / 1.7)
    # per-step form: steps without drafts are plain steps (1 token for 1)
    assert predicted_speedup_of_steps(0.5, [2, 0, 0], 0.1, 1.3) == pytest.approx((1.75 + 2) / (1.5 + 2))
    assert predicted_speedup_of_steps(None, [0, 0], 0.1, 1.3) == 1.0


# c and v fixed by hand so the switch-off decision depends only on the acceptance the drafts earn
COSTS = SpecCosts(plain_step_s=1e-3, c=0.1, v=1.3, k=4)


def test_losing_speculation_switches_itself_off_and_stays_exact(target, drafts) -> None:
    rule = AutoOff(min_speedup=1.0, after_steps=3, probe_overhead=1e-3)  # no probe within these 40 tokens
    for prompt in _prompts(3):
        want, _ = Stream(target_stream(target, prompt, 40)).run()
        far_tokens, far = Stream(speculative_stream(target, DraftModel(drafts["unrelated"]), prompt, 40, k=4,
                                                    costs=COSTS, auto_off=rule)).run()  # fmt: skip
        assert far_tokens == want  # still the target's greedy output
        assert far["spec_auto_off"] and far["num_spec_steps"] == 3 and far["auto_off_alpha"] < 0.5
        assert predicted_speedup(far["auto_off_alpha"], 4, 0.1, 1.3) < 1.0
        # after switching off: one target pass per token, no more drafts
        assert far["target_forward_passes"] == 1 + 3 + (40 - far["auto_off_at_token"])
        assert far["num_draft_tokens"] == 12
        close_tokens, close = Stream(speculative_stream(target, DraftModel(drafts["close"]), prompt, 40, k=4,
                                                        costs=COSTS, auto_off=rule)).run()  # fmt: skip
        assert close_tokens == want and not close["spec_auto_off"]
        assert close["predicted_speedup"] > 1.0 and close["v"] == 1.3 and close["cost_source"] == "calibrated"


def test_closed_stream_keeps_the_stats_of_the_steps_that_ran(target, drafts) -> None:
    live: dict = {}
    stream = Stream(speculative_stream(target, DraftModel(drafts["close"]), _prompts(1)[0], 40, k=4, stats=live),
                    live)  # fmt: skip
    for i, _ in enumerate(stream):
        if i == 3:
            break
    st = stream.close()
    assert st is live and st["num_spec_steps"] == 3 and st["target_forward_passes"] == 4
    assert st["new_tokens"] == len(stream.tokens) and st["decode_compute_s"] > 0


class _Scripted:
    """A drafter that proposes wrong tokens for its first ``bad`` proposals, then the target's own continuation (a
    stand-in for prompt lookup finding its n-grams late in an answer)."""

    mode = "speculative"

    def __init__(self, want: list[int], prompt_len: int, bad: int) -> None:
        self.want, self.prompt_len, self.bad, self.calls, self.forward_passes = want, prompt_len, bad, 0, 0

    def start(self, prompt_ids) -> None:
        pass

    def propose(self, seq, k, temperature, top_p, generator):
        self.calls += 1
        pos = len(seq) - self.prompt_len
        right = self.want[pos : pos + k]
        if self.calls <= self.bad:
            return [(t + 1) % VOCAB for t in right], None
        return right, None

    def rollback(self, length: int) -> None:
        pass


def test_switched_off_speculation_probes_and_comes_back(target) -> None:
    prompt = _prompts(1)[0]
    want, _ = Stream(target_stream(target, prompt, 60)).run()
    rule = AutoOff(min_speedup=1.0, after_steps=3, probe_overhead=0.25)
    assert rule.retry_every(4, COSTS.c, COSTS.v) == 3  # a losing probe costs 4 * 0.1 + 1.3 - 1 = 0.7 plain steps
    got, st = Stream(speculative_stream(target, _Scripted(want, len(prompt), bad=4), prompt, 60, k=4,
                                        costs=COSTS, auto_off=rule)).run()  # fmt: skip
    assert got == want and st["spec_auto_off"] and st["auto_off_at_token"] == 4  # 3 losing steps of 1 token each
    # the probe after 3 plain tokens still lost (4th bad proposal), the next (after 3 more) was accepted: back on
    assert st["auto_off_plain_tokens"] == 3 + 3
    assert st["num_spec_steps"] > 3 + 2 and st["num_accepted_draft_tokens"] > 20
    assert st["target_forward_passes"] < 60 - 20


def test_costs_interpolate_over_context_length() -> None:
    costs = SpecCosts(0.01, 0.2, 1.2, 4, context=40, points=((40, 0.01, 0.2, 1.2), (240, 0.02, 0.1, 1.6)))
    mid = costs.at(140)
    assert mid.c == pytest.approx(0.15) and mid.v == pytest.approx(1.4) and mid.plain_step_s == pytest.approx(0.015)
    assert costs.at(10).v == pytest.approx(1.2) and costs.at(1000).v == pytest.approx(1.6)
    assert SpecCosts(0.01, 0.2, 1.2, 4).at(500).v == 1.2  # one point: no interpolation


def test_measured_costs_of_a_pair(target, drafts) -> None:
    prompt = _prompts(1)[0]
    costs = measure_costs(target, DraftModel(drafts["unrelated"]), prompt, k=4, steps=4, repeats=1, contexts=(8, 64))
    assert costs.plain_step_s > 0 and costs.c > 0 and costs.v > 0 and costs.k == 4
    assert [p[0] for p in costs.points] == [8 + 4, 64 + 4] and costs.context == 12
    lookup = measure_costs(target, PromptLookup(), prompt, k=4, steps=4, repeats=1)
    assert lookup.c < costs.c  # an n-gram search is cheaper than a draft model's forward pass


def test_prompt_lookup_proposes_the_continuation_of_the_latest_match() -> None:
    pl = PromptLookup(max_ngram=2)
    assert pl.propose([5, 6, 7, 8, 9, 5, 6, 1, 2, 5, 6], 3, 0.0, 1.0, None)[0] == [1, 2, 5]
    assert pl.propose([1, 2, 3, 4], 3, 0.0, 1.0, None)[0] == []
    # a short loop: the latest match has one token after it, an earlier one a full continuation
    assert pl.propose([7, 7, 7, 7, 7], 3, 0.0, 1.0, None)[0] == [7, 7, 7]


def test_speculation_rolls_back_sliding_window_layers_past_the_window() -> None:
    """Gemma 3's sliding-window layers keep only the last window of keys; a rejected draft past the window must still
    be rolled back (the Engine's load-time calibration at a context > window failed on this before)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, max_position_embeddings=256,
        layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    torch.manual_seed(2)
    gemma = Gemma3ForCausalLM(cfg).to(torch.float64).eval()
    draft = copy.deepcopy(gemma)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # a close draft: accepted and rejected tokens
    engine = Engine(gemma, draft)
    prompt = _prompts(6)[5] * 3  # 40 tokens, five windows
    costs = engine.calibrate(prompt[:10], "speculative", k=3, steps=4, repeats=1, contexts=(4, 40))
    assert [pt[0] for pt in costs.points] == [4 + 4, 40 + 4]
    plain = engine.generate(prompt, max_new_tokens=30)[0]
    for mode in ("speculative", "prompt_lookup"):
        tokens, st = engine.generate(prompt, max_new_tokens=30, mode=mode, k=3)
        assert tokens == plain, mode
        assert st["num_spec_steps"] > 0
    assert engine.generate(prompt, max_new_tokens=30, mode="speculative", k=3)[1]["num_rejection_steps"] > 0
