"""Instrumented speculative decoding: a drafter proposes k tokens, the target verifies them in one forward pass.

Drafters: :class:`DraftModel` (a small causal LM with its own KV cache) and :class:`PromptLookup` (n-gram match in the
prompt and generated text; no model). Verification is exact: at temperature 0 the output is the target's greedy
output token for token; otherwise :func:`rejection_sample` (Leviathan et al. 2023, Chen et al. 2023) accepts draft
token x with probability min(1, p(x)/q(x)) and on rejection samples from norm(max(p − q, 0)), so every emitted token
is distributed exactly as the target's (temperature, top-p) distribution. A deterministic proposal (prompt lookup) is
the special case q = one-hot(x).

Caches: the target's cache holds every token but the last emitted one ("pending"); each step feeds
[pending, d1..dk] (k+1 positions) and crops back to the accepted prefix, so a rejection costs no recompute.

Predicted speedup: with per-token acceptance α, E = (1 − α^(k+1)) / (1 − α) tokens per target pass (Leviathan et
al.); a step costs k draft tokens plus one verify pass, so against plain decoding the speedup is E / (k·c + v) with
c = draft token time / plain step time and v = verify pass time / plain step time. Leviathan et al. take v = 1; on
a CPU a verify pass of k+1 positions costs ~1.2-1.4 plain steps, which decides whether a mediocre draft wins.
:func:`measure_costs` measures c and v for a model pair (what :meth:`Engine.calibrate` stores).

Auto-off: with :class:`AutoOff`, a request whose drafted steps (at least ``after_steps``) predict a speedup below
``min_speedup`` stops drafting and decodes plainly (``spec_auto_off`` in its stats); now and then one drafted step
probes whether acceptance came back (prompt lookup often finds its n-grams later in an answer), spaced so that losing
probes cost at most ``probe_overhead`` of plain decoding, and drafting resumes with a fresh count when it did. A
draft that does not know a language or a domain costs a few steps, not the answer.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from serving.decode.generate import (
    Chunk,
    Stream,
    check_request,
    crop_cache,
    finish_stats,
    forward,
    fresh_stats,
    new_cache,
    pick,
    prefill,
    probs_from_logits,
    sample,
    target_stream,
    token_logprobs,
)


@dataclass(frozen=True)
class SpecCosts:
    """A model pair's step costs: plain target step (s), c = draft token / plain, v = verify / plain.

    ``source="calibrated"``: c and v measured for the pair (:func:`measure_costs`) at one or more context lengths
    (``points``: (context tokens, plain step s, c, v)); :meth:`at` interpolates them, since a verify pass attends over
    the whole context k+1 times and its relative cost grows with it. ``"request"``: only the plain step is known (from
    earlier target-only requests) and c, v (None here) come from each request's own step times.
    """

    plain_step_s: float
    c: float | None
    v: float | None
    k: int
    source: str = "calibrated"
    context: int = 0
    points: tuple[tuple[int, float, float, float], ...] = ()

    def at(self, context: int) -> SpecCosts:
        """The costs at ``context`` tokens: linear between calibration points, the nearest point outside them."""
        if len(self.points) < 2:
            return self
        pts = sorted(self.points)
        lo, hi = (pts[0], pts[1]) if context <= pts[0][0] else (pts[-2], pts[-1])
        for a, b in zip(pts, pts[1:], strict=False):
            if a[0] <= context <= b[0]:
                lo, hi = a, b
        w = min(1.0, max(0.0, (context - lo[0]) / (hi[0] - lo[0]) if hi[0] > lo[0] else 0.0))
        plain, c, v = (lo[i] + w * (hi[i] - lo[i]) for i in (1, 2, 3))
        return SpecCosts(plain, c, v, self.k, self.source, context, self.points)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AutoOff:
    """Switch drafting off mid-request while the recent acceptance predicts a loss, probing now and then."""

    min_speedup: float = 1.0  # predicted E/(k·c + v) below this (acceptance since drafting started) -> plain decoding
    after_steps: int = 4  # drafted steps before deciding: fewer = cheaper for losing requests, noisier α
    probe_overhead: float = 0.05  # one drafted probe step every (k·c + v − 1) / this plain tokens: a probe that
    # loses costs k·c + v − 1 plain steps, so losing probes cost at most this share of plain decoding (a cheap
    # drafter such as prompt lookup probes every few tokens, a draft model every few dozen)

    def retry_every(self, k: int, c: float, v: float) -> int:
        """Plain tokens between probes while drafting is off."""
        return max(1, math.ceil(max(k * c + v - 1.0, 0.0) / self.probe_overhead))


def expected_tokens(alpha: float, k: int) -> float:
    """E = (1 − α^(k+1)) / (1 − α): expected tokens per target pass with k drafts of acceptance α."""
    if alpha >= 1.0:
        return float(k + 1)
    if alpha <= 0.0:
        return 1.0
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def predicted_speedup(alpha: float, k: float, c: float, v: float = 1.0) -> float:
    """Speedup over target-only decoding: E / (k·c + v); v = 1 is Leviathan et al.'s form (free verify pass)."""
    return expected_tokens(alpha, k) / (k * c + v)


def predicted_speedup_of_steps(alpha: float | None, step_ks: Sequence[int], c: float, v: float) -> float:
    """ΣE / Σcost over a request's steps: a step with k_i drafts yields E(α, k_i) tokens for k_i·c + v plain-step
    costs; a step without drafts (auto-off, no n-gram match) is a plain step: 1 token for 1."""
    e = sum(expected_tokens(alpha or 0.0, kk) if kk else 1.0 for kk in step_ks)
    cost = sum(kk * c + v if kk else 1.0 for kk in step_ks)
    return e / cost if cost else 1.0


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
        self.cache = new_cache(model, rollback=True)
        self.forward_passes = 0

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Prefill the draft cache with the prompt."""
        self.cache = new_cache(self.model, rollback=True)
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
    costs: SpecCosts | None = None,
    auto_off: AutoOff | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Speculative decoding; yields (tokens kept, their log-probs, entropies) per step and returns the stats dict.

    With ``adaptive_k`` the draft length grows by 2 after a fully accepted step and shrinks by 1 after a rejection,
    within [1, 2k]. ``costs`` (the pair's measured c and v) give ``predicted_speedup``; with ``auto_off`` too, a
    losing request stops drafting. ``stats`` is filled in place (complete after an early close too).
    """
    if k < 1:
        raise ValueError(f"k (draft tokens per step) must be >= 1, got {k}")
    k_max = 2 * k if adaptive_k else k
    check_request(target, prompt_ids, max_new_tokens, k_max)
    stats = fresh_stats(stats, drafter.mode, k, len(prompt_ids))
    run = _Run(k_max)
    costs = costs.at(len(prompt_ids) + max_new_tokens // 2) if costs is not None else None
    t0 = time.perf_counter()
    t1, out = None, []
    try:
        with torch.inference_mode():
            cache = new_cache(target, rollback=True)
            first = prefill(target, prompt_ids, cache)
            token = pick(first, temperature, top_p, generator)
            drafter.start(prompt_ids)
            stats["prefill_s"] = stats["time_to_first_token_s"] = time.perf_counter() - t0
            seq, out, k_cur = list(prompt_ids) + [token], [token], k
            yield [token], *token_logprobs(first[None], [token])
            t1 = time.perf_counter()
            while len(out) < max_new_tokens and out[-1] not in stop_ids:
                kk = min(k_cur, max_new_tokens - len(out) - 1) if run.draft_now(auto_off) else 0
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
                new = _cut_at_stop(drafts[:n_acc] + [nxt], stop_ids)
                lp = token_logprobs(logits[: len(new)], new)
                run.add(stats, drafts, n_acc, tb - ta, time.perf_counter() - tb)
                if adaptive_k and drafts:
                    k_cur = min(k_max, k_cur + 2) if n_acc == len(drafts) else max(1, k_cur - 1)
                if run.decide(auto_off, costs, k_cur, bool(drafts), len(new)):
                    stats.update(spec_auto_off=True, auto_off_at_token=len(out) + len(new), auto_off_alpha=run.alpha)
                seq += new
                out += new
                yield new, *lp
    finally:
        stats["decode_s"] = time.perf_counter() - t1 if t1 is not None else 0.0
        stats["target_forward_passes"] += 1  # the prefill
        stats["draft_forward_passes"] = drafter.forward_passes
        finish_stats(stats, out, stop_ids, t0)
        run.finish(stats, costs)
    return stats


class _Run:
    """Per-step counters of one speculative request (acceptance by position, times) and the maths on them."""

    def __init__(self, k_max: int) -> None:
        self.acc_hist, self.prop_hist, self.step_ks = [0] * k_max, [0] * k_max, []
        self.t_draft = self.t_verify = self.t_plain = 0.0
        self.rejections = self.accepted = self.proposed = 0
        self.recent: list[tuple[int, int]] = []  # (accepted, rejected 0/1) of the latest drafted steps
        self.off, self.plain_since_off, self.retry_every, self.off_tokens, self.phase_start = False, 0, 0, 0, 0

    @property
    def alpha(self) -> float | None:
        # MLE of the per-token acceptance α: each step accepts a geometric run, stopped by one rejection
        n = self.accepted + self.rejections
        return self.accepted / n if n else None

    def add(self, stats: dict[str, Any], drafts: list[int], n_acc: int, t_draft: float, t_target: float) -> None:
        stats["target_forward_passes"] += 1
        self.step_ks.append(len(drafts))
        self.t_draft += t_draft
        if drafts:
            self.t_verify += t_target
            stats["num_spec_steps"] += 1
            self.rejections += n_acc < len(drafts)
            self.recent.append((n_acc, int(n_acc < len(drafts))))
            for i in range(len(drafts)):
                self.prop_hist[i] += 1
                self.acc_hist[i] += i < n_acc
        else:
            self.t_plain += t_target
        self.accepted += n_acc
        self.proposed += len(drafts)
        stats["num_draft_tokens"] += len(drafts)
        stats["num_accepted_draft_tokens"] += n_acc

    def cv(self, costs: SpecCosts) -> tuple[float, float] | None:
        """(c, v): the pair's calibrated values, else this request's own step times over the plain step."""
        if costs.c is not None and costs.v is not None:
            return costs.c, costs.v
        spec_steps = sum(1 for kk in self.step_ks if kk)
        if not (spec_steps and self.proposed and costs.plain_step_s):
            return None
        return self.t_draft / self.proposed / costs.plain_step_s, self.t_verify / spec_steps / costs.plain_step_s

    def losing(self, rule: AutoOff, costs: SpecCosts, k: int, steps: list[tuple[int, int]]) -> bool:
        """Whether the acceptance over ``steps`` (drafted steps: accepted, rejected 0/1) predicts a speedup below
        ``min_speedup``."""
        cv = self.cv(costs)
        if cv is None:
            return False
        acc, rej = sum(a for a, _ in steps), sum(r for _, r in steps)
        alpha = acc / (acc + rej) if acc + rej else 1.0
        return predicted_speedup(alpha, k, *cv) < rule.min_speedup

    def draft_now(self, rule: AutoOff | None) -> bool:
        """Draft this step: always while on; while off, one probe step every ``retry_every`` plain tokens."""
        return not self.off or (rule is not None and self.plain_since_off >= self.retry_every)

    def decide(self, rule: AutoOff | None, costs: SpecCosts | None, k: int, drafted: bool, n_new: int) -> bool:
        """Update the on/off state after a step; True when drafting just switched off for the first time.

        Off when the drafted steps since drafting (re)started, at least ``after_steps`` of them, predict a loss; a
        probe step alone decides whether to come back (then a new phase starts).
        """
        if rule is None or costs is None:
            return False
        if self.off and not drafted:
            self.plain_since_off += 1
            self.off_tokens += n_new
            return False
        if self.off:
            if self.losing(rule, costs, k, self.recent[-1:]):
                self.plain_since_off = 0
            else:
                self.off, self.phase_start = False, len(self.recent) - 1
            return False
        phase = self.recent[self.phase_start :]
        if len(phase) >= rule.after_steps and self.losing(rule, costs, k, phase):
            first = self.retry_every == 0
            cv = self.cv(costs)
            self.off, self.plain_since_off, self.retry_every = True, 0, rule.retry_every(k, *cv)
            return first
        return False

    def finish(self, stats: dict[str, Any], costs: SpecCosts | None) -> None:
        stats["acceptance_histogram"], stats["proposed_per_position"] = self.acc_hist, self.prop_hist
        stats["num_rejected_draft_tokens"] = self.proposed - self.accepted
        stats["num_rejection_steps"] = self.rejections
        stats["decode_compute_s"] = self.t_draft + self.t_verify + self.t_plain
        stats["auto_off_plain_tokens"] = self.off_tokens
        spec_steps = stats["num_spec_steps"]
        if not self.step_ks:
            return
        if spec_steps:
            stats["mean_acceptance_length"] = 1.0 + self.accepted / spec_steps
            stats["verify_step_s"] = stats["target_step_s"] = self.t_verify / spec_steps
            stats["mean_k"] = self.proposed / spec_steps
        if self.proposed:
            stats["draft_acceptance_rate"] = self.accepted / self.proposed
            stats["alpha"] = self.alpha
            stats["draft_step_s"] = self.t_draft / self.proposed
        stats["expected_tokens"] = sum(
            expected_tokens(self.alpha or 0.0, kk) if kk else 1.0 for kk in self.step_ks
        ) / len(self.step_ks)
        cv = self.cv(costs) if costs is not None else None
        if cv is None:
            return
        stats.update(plain_step_s=costs.plain_step_s, c=cv[0], v=cv[1], cost_source=costs.source)
        stats["predicted_speedup"] = predicted_speedup_of_steps(self.alpha, self.step_ks, *cv)
        decoded = stats["new_tokens"] - 1
        if decoded > 0 and stats["decode_compute_s"] > 0:
            stats["measured_speedup"] = costs.plain_step_s * decoded / stats["decode_compute_s"]


def measure_costs(
    target: torch.nn.Module, drafter: DraftModel | PromptLookup, prompt_ids: Sequence[int], k: int = 4,
    steps: int = 12, repeats: int = 3, contexts: Sequence[int] = (),
) -> SpecCosts:  # fmt: skip
    """Time a block of plain target steps, then a block of speculative steps (drafted tokens and verify passes of k+1
    positions), ``repeats`` times after a warm-up, at each context length in ``contexts`` (default: the probe's own
    length; the probe is tiled to reach longer ones). c and v are the medians of each round's ratios, so a busy
    machine that slows one round slows both its blocks. Returns the pair's costs, interpolated over context by
    :meth:`SpecCosts.at`.

    Blocks, not alternating single steps: plain decoding keeps the target's weights in cache, speculation alternates
    two models, and each is timed in its own regime. The verify passes check the real drafter's proposals on the
    probe (padded to k tokens, so every pass has k+1 positions), exactly as a speculative step does.
    """
    points = []
    for n in contexts or (len(prompt_ids),):
        probe = (list(prompt_ids) * (n // max(len(prompt_ids), 1) + 1))[:n]
        plain, cs, vs = [], [], []
        for rep in range(repeats + 1):
            _, st = Stream(target_stream(target, probe, steps + 1)).run()
            verify, draft = _time_verify(target, drafter, probe, k, steps)
            if rep:  # the first round warms caches and allocators up
                p = st["target_step_s"]
                plain.append(p)
                cs.append(draft / p)
                vs.append(verify / p)
        points.append((n + steps, statistics.median(plain), statistics.median(cs), statistics.median(vs)))
    ctx, p, c, v = points[0]
    return SpecCosts(plain_step_s=p, c=c, v=v, k=k, context=ctx, points=tuple(points))


def _time_verify(
    target: torch.nn.Module, drafter: DraftModel | PromptLookup, probe: list[int], k: int, steps: int
) -> tuple[float, float]:
    """(verify pass s, draft s per proposed token) over ``steps`` speculative steps on the probe."""
    t_verify = t_draft = 0.0
    proposed = 0
    with torch.inference_mode():
        cache = new_cache(target, rollback=True)
        seq = probe + [int(prefill(target, probe, cache).argmax())]
        drafter.start(probe)
        for _ in range(steps):
            ta = time.perf_counter()
            got, _ = drafter.propose(seq, k, 0.0, 1.0, None)
            tb = time.perf_counter()
            drafts = (list(got) + probe)[:k]  # k drafts per pass whatever the drafter found
            logits = forward(target, seq[cache.get_seq_length() :] + drafts, cache)[-(len(drafts) + 1) :]
            n_acc, nxt = greedy_verify(logits, drafts)
            crop_cache(cache, len(seq) + n_acc)
            drafter.rollback(len(seq) + n_acc)
            new = drafts[:n_acc] + [nxt]
            token_logprobs(logits[: len(new)], new)
            t_verify += time.perf_counter() - tb
            t_draft += tb - ta
            proposed += len(got)
            seq += new
    return t_verify / steps, t_draft / max(proposed, 1)


def _cut_at_stop(tokens: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stop_ids:
            return tokens[: i + 1]
    return tokens
