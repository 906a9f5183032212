"""Instrumented speculative decoding: a drafter proposes k tokens, the target verifies them in one forward pass.

Drafters: :class:`DraftModel` (a small causal LM with its own KV cache) and :class:`PromptLookup` (n-gram match in the
prompt and generated text; no model). Verification is exact: at temperature 0 the output is the target's greedy
output token for token; otherwise :func:`rejection_sample` (Leviathan et al. 2023, Chen et al. 2023) accepts draft
token x with probability min(1, p(x)/q(x)) and on rejection samples from norm(max(p − q, 0)), so every emitted token
is distributed exactly as the target's (temperature, top-p) distribution. A deterministic proposal (prompt lookup) is
the special case q = one-hot(x).

Caches: the target's cache holds every token but the last emitted one ("pending"); each step feeds
[pending, d1..dk] (k+1 positions) and crops back to the accepted prefix, so a rejection costs no recompute.

Predicted speedup (Leviathan et al.): with per-token acceptance α and cost ratio c = t_draft / t_target,
E = (1 − α^(k+1)) / (1 − α) tokens per target pass and speedup E / (k·c + 1).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from serving.decode.generate import (
    Chunk,
    check_request,
    crop_cache,
    finish_stats,
    forward,
    new_cache,
    new_stats,
    pick,
    prefill,
    probs_from_logits,
    sample,
    token_logprobs,
)


def expected_tokens(alpha: float, k: int) -> float:
    """E = (1 − α^(k+1)) / (1 − α): expected tokens per target pass with k drafts of acceptance α."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def predicted_speedup(alpha: float, k: int, c: float) -> float:
    """Leviathan et al.'s wall-clock speedup over target-only decoding: E / (k·c + 1)."""
    return expected_tokens(alpha, k) / (k * c + 1.0)


def greedy_verify(logits: torch.Tensor, drafts: Sequence[int]) -> tuple[int, int]:
    """Accept the longest prefix of ``drafts`` matching the target's argmax; returns (accepted, next token).

    logits: [n+1, V], row i is the target's prediction after the i-th draft token (row 0 after the pending token).
    """
    best = logits.argmax(-1).tolist()  # [n+1]
    n = 0
    while n < len(drafts) and drafts[n] == best[n]:
        n += 1
    return n, best[n]


def rejection_sample(
    p: torch.Tensor, q: torch.Tensor | None, drafts: Sequence[int], generator: torch.Generator | None = None
) -> tuple[int, int]:
    """Speculative sampling; returns (accepted draft tokens, next token) with next ~ the target's distribution.

    p: [n+1, V] target probabilities; q: [n, V] draft probabilities, or None for a deterministic proposal
    (q = one-hot of each draft token); drafts: the n proposed token ids.
    """
    n = len(drafts)
    idx = torch.tensor(list(drafts), dtype=torch.long, device=p.device)  # [n]
    rows = torch.arange(n, device=p.device)
    p_x = p[rows, idx]
    ratio = p_x if q is None else p_x / q[rows, idx]
    r = torch.rand(n, generator=generator, device=p.device)
    rejected = (r >= ratio).nonzero()
    if len(rejected) == 0:
        return n, sample(p[n], generator)
    i = int(rejected[0])
    if q is None:
        residual = p[i].clone()
        residual[idx[i]] = 0.0
    else:
        residual = (p[i] - q[i]).clamp_min(0.0)
    total = residual.sum()
    residual = residual / total if total > 0 else p[i]
    return i, sample(residual, generator)


class DraftModel:
    """A small causal LM proposing tokens autoregressively from its own KV cache."""

    mode = "speculative"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.cache = new_cache(model)
        self.forward_passes = 0

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Prefill the draft cache with the prompt."""
        self.cache = new_cache(self.model)
        prefill(self.model, prompt_ids, self.cache)

    def propose(
        self, seq: Sequence[int], k: int, temperature: float, top_p: float, generator: torch.Generator | None
    ) -> tuple[list[int], torch.Tensor | None]:
        """k draft tokens after ``seq`` and their draft probabilities [k, V] (None when greedy)."""
        ids = list(seq[self.cache.get_seq_length() :])
        tokens, qs = [], []
        for _ in range(k):
            logits = forward(self.model, ids, self.cache)[-1]
            self.forward_passes += 1
            if temperature <= 0:
                tok = int(logits.argmax())
            else:
                probs = probs_from_logits(logits, temperature, top_p)
                qs.append(probs)
                tok = sample(probs, generator)
            tokens.append(tok)
            ids = [tok]
        return tokens, (torch.stack(qs) if qs else None)

    def rollback(self, length: int) -> None:
        """Forget cached positions beyond ``length`` (the tokens the target did not keep)."""
        crop_cache(self.cache, length)


class PromptLookup:
    """Proposes the tokens that followed the latest earlier occurrence of the context's last n-gram."""

    mode = "prompt_lookup"

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.forward_passes = 0

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Nothing to prefill."""

    def propose(
        self, seq: Sequence[int], k: int, temperature: float, top_p: float, generator: torch.Generator | None
    ) -> tuple[list[int], None]:
        """Up to k tokens copied from the context (fewer, or none, when no n-gram matches).

        Takes the latest match whose continuation has k tokens; a match close to the end (a short loop) has a
        shorter continuation, so failing a full one the longest continuation found wins.
        """
        for n in range(min(self.max_ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail, best = list(seq[-n:]), []
            for start in range(len(seq) - n - 1, -1, -1):
                if seq[start] == tail[0] and list(seq[start : start + n]) == tail:
                    cont = list(seq[start + n : start + n + k])
                    if len(cont) == k:
                        return cont, None
                    best = cont if len(cont) > len(best) else best
            if best:
                return best, None
        return [], None

    def rollback(self, length: int) -> None:
        """Stateless: nothing to forget."""


def speculative_stream(
    target: torch.nn.Module,
    drafter: DraftModel | PromptLookup,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
    adaptive_k: bool = False,
) -> Iterator[Chunk]:
    """Speculative decoding; yields (tokens kept, their log-probs, entropies) per step and returns the stats dict.

    With ``adaptive_k`` the draft length grows by 2 after a fully accepted step and shrinks by 1 after a rejection,
    within [1, 2k].
    """
    if k < 1:
        raise ValueError(f"k (draft tokens per step) must be >= 1, got {k}")
    k_max = 2 * k if adaptive_k else k
    check_request(target, prompt_ids, max_new_tokens, k_max)
    stats = new_stats(drafter.mode, k, len(prompt_ids))
    acc_hist, prop_hist, step_ks = [0] * k_max, [0] * k_max, []
    t_draft = t_target = 0.0
    rejections = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        cache = new_cache(target)
        first = prefill(target, prompt_ids, cache)
        token = pick(first, temperature, top_p, generator)
        drafter.start(prompt_ids)
        stats["prefill_s"] = stats["time_to_first_token_s"] = time.perf_counter() - t0
        seq, out, k_cur = list(prompt_ids) + [token], [token], k
        yield [token], *token_logprobs(first[None], [token])
        t1 = time.perf_counter()
        while len(out) < max_new_tokens and out[-1] not in stop_ids:
            kk = min(k_cur, max_new_tokens - len(out) - 1)
            ta = time.perf_counter()
            drafts, q = drafter.propose(seq, kk, temperature, top_p, generator) if kk > 0 else ([], None)
            tb = time.perf_counter()
            # logits: [n+1, V] for positions after pending, d1, ..., dn
            logits = forward(target, seq[cache.get_seq_length() :] + drafts, cache)[-(len(drafts) + 1) :]
            if temperature <= 0:
                n_acc, nxt = greedy_verify(logits, drafts)
            else:
                n_acc, nxt = rejection_sample(probs_from_logits(logits, temperature, top_p), q, drafts, generator)
            crop_cache(cache, len(seq) + n_acc)
            drafter.rollback(len(seq) + n_acc)
            t_draft, t_target = t_draft + tb - ta, t_target + time.perf_counter() - tb
            stats["target_forward_passes"] += 1
            step_ks.append(len(drafts))
            if drafts:
                stats["num_spec_steps"] += 1
                rejections += n_acc < len(drafts)
                for i in range(len(drafts)):
                    prop_hist[i] += 1
                    acc_hist[i] += i < n_acc
            stats["num_draft_tokens"] += len(drafts)
            stats["num_accepted_draft_tokens"] += n_acc
            if adaptive_k and drafts:
                k_cur = min(k_max, k_cur + 2) if n_acc == len(drafts) else max(1, k_cur - 1)
            new = _cut_at_stop(drafts[:n_acc] + [nxt], stop_ids)
            seq += new
            out += new
            yield new, *token_logprobs(logits[: len(new)], new)
        stats["decode_s"] = time.perf_counter() - t1
    stats["target_forward_passes"] += 1  # the prefill
    stats["draft_forward_passes"] = drafter.forward_passes
    stats["acceptance_histogram"], stats["proposed_per_position"] = acc_hist, prop_hist
    _acceptance_stats(stats, rejections, step_ks, t_draft, t_target)
    return finish_stats(stats, out, stop_ids, t0)


def _cut_at_stop(tokens: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stop_ids:
            return tokens[: i + 1]
    return tokens


def _acceptance_stats(
    stats: dict[str, Any], rejections: int, step_ks: list[int], t_draft: float, t_target: float
) -> None:
    proposed, accepted = stats["num_draft_tokens"], stats["num_accepted_draft_tokens"]
    stats["num_rejected_draft_tokens"] = proposed - accepted
    stats["num_rejection_steps"] = rejections
    if not step_ks:
        return
    if stats["num_spec_steps"]:
        stats["mean_acceptance_length"] = 1.0 + accepted / stats["num_spec_steps"]
    if proposed:
        stats["draft_acceptance_rate"] = accepted / proposed
        # MLE of the per-token acceptance α: each step accepts a geometric run, stopped by one rejection
        stats["alpha"] = accepted / (accepted + rejections) if accepted + rejections else None
        stats["draft_step_s"] = t_draft / proposed
    stats["target_step_s"] = t_target / len(step_ks)
    if stats["alpha"] is not None and stats["draft_step_s"] is not None:
        c = stats["draft_step_s"] / stats["target_step_s"]
        mean_k = sum(step_ks) / len(step_ks)
        e = sum(expected_tokens(stats["alpha"], kk) for kk in step_ks) / len(step_ks)
        stats["c"], stats["mean_k"] = c, mean_k
        stats["expected_tokens"] = e
        stats["predicted_speedup"] = e / (mean_k * c + 1.0)
