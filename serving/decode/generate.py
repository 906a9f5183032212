"""Token generation with a KV cache: prefill, decode_one_token, greedy or temperature/top-p sampling.

Per-request API (what the server calls)::

    from serving.decode.engine import Engine
    engine = Engine(target, draft=None)          # HF causal LMs already on their device (see serving.models)
    tokens, stats = engine.generate(prompt_ids, max_new_tokens=64, temperature=0.0, top_p=1.0,
                                    mode="target", k=4, stop_ids=(eos_id,), seed=None, adaptive_k=False)
    stream = engine.stream(prompt_ids, ...same keyword arguments...)
    for chunk in stream:                          # list[int]: the tokens accepted in one step (1..k+1 of them)
        ...                                       # send as SSE
    stream.stats                                  # same dict as generate()'s, filled when the iteration ends
    stream.tokens, stream.logprobs, stream.entropies   # per emitted token: the target's log-prob (nats, at
                                                  # temperature 1, before top-p) and the entropy of that distribution

``mode``: ``"target"`` (target model alone), ``"speculative"`` (draft model proposes ``k`` tokens, target verifies),
``"prompt_lookup"`` (n-gram lookup in the prompt and the generated text proposes, no draft model). ``temperature=0``
is greedy and speculative modes then return exactly the target's greedy tokens; with ``temperature>0`` the rejection
sampler keeps the target's (temperature, top-p) distribution exactly. Stop tokens are included in the output and end
generation (``stats["finish_reason"] == "stop"``), otherwise ``"length"``.

``stats`` keys (seconds unless named otherwise): ``mode, k, prompt_tokens, new_tokens, finish_reason,
time_to_first_token_s, prefill_s, decode_s`` (wall), ``decode_compute_s`` (the steps' own work, without the
consumer's time between chunks), ``total_s, tokens_per_second, target_forward_passes, draft_forward_passes,
num_spec_steps, num_draft_tokens, num_accepted_draft_tokens, num_rejected_draft_tokens, num_rejection_steps,
mean_acceptance_length, draft_acceptance_rate, alpha, acceptance_histogram`` (accepted count per draft position),
``proposed_per_position, target_step_s`` (target-only: a plain step; speculative: a verify step),
``plain_step_s, verify_step_s, draft_step_s`` (per drafted token), ``c`` (draft token / plain step), ``v`` (verify
step / plain step), ``cost_source`` (``calibrated`` per model pair by :meth:`Engine.calibrate`, or ``request``),
``expected_tokens`` (E per target pass from α and each step's k), ``predicted_speedup`` (ΣE / Σ(k·c + v) over the
steps), ``measured_speedup`` (plain step time × decoded tokens / decode compute time), ``spec_auto_off,
auto_off_at_token, auto_off_alpha`` (speculation switched itself off mid-request because it was losing). vLLM
per-request names are used where they exist. Streams given a ``stats`` dict fill it in place, so a stream closed
early (a stop string) still reports the passes it ran.

Thread safety: an Engine keeps no per-request state (each call builds its own KV caches), but the models are shared
and PyTorch CPU kernels already use every core, so callers should serialise calls per Engine (one lock or one worker
queue per model); concurrent calls are correct but slower.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from transformers import DynamicCache

Chunk = tuple[list[int], list[float], list[float]]  # tokens kept in one step, their log-probs, entropies
Mode = Literal["target", "speculative", "prompt_lookup"]
MODES: tuple[str, ...] = ("target", "speculative", "prompt_lookup")


def new_cache(model: torch.nn.Module, rollback: bool = False) -> DynamicCache:
    """An empty KV cache for ``model``; ``rollback``: one :func:`crop_cache` can cut back (speculation).

    Sliding-window layers (Gemma 3's) keep only the last window of keys, so a rejected draft past the window could not
    be dropped; with ``rollback`` they keep the keys written since the last crop, and each crop trims them back to the
    window (memory stays bounded by the window plus one verify pass).
    """
    cache = DynamicCache(config=model.config)
    if rollback:
        cache.activate_past_recording()
    return cache


def crop_cache(cache: DynamicCache, length: int) -> None:
    """Drop cached positions beyond ``length`` (rejected draft tokens); the cache needs ``new_cache(rollback=True)``
    when the model has sliding-window layers."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def forward(model: torch.nn.Module, ids: Sequence[int], cache: DynamicCache, last_only: bool = False) -> torch.Tensor:
    """Run ``ids`` through ``model`` after the cached prefix; returns float logits [S, V] (or [1, V] if last_only)."""
    x = torch.tensor([list(ids)], dtype=torch.long, device=model.device)  # [1, S]
    out = model(input_ids=x, past_key_values=cache, use_cache=True, logits_to_keep=1 if last_only else 0)
    return out.logits[0].float()


def probs_from_logits(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Sampling distribution(s) [..., V] from logits with temperature and nucleus (top-p) truncation."""
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    # keep the smallest prefix whose mass reaches top_p (the first token is always kept)
    drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    out = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return out / out.sum(-1, keepdim=True)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token id drawn from a [V] distribution."""
    return int(torch.multinomial(probs, 1, generator=generator))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each row's softmax; logits [..., V]. Not ``exp(log_softmax)``: exp of the far-negative floor logits
    of a compact model's scattered head takes the slow underflow path (~4 ms per 262k-wide row on CPU), and a row
    with ``-inf`` logits (a screened head) gets no NaN (``xlogy(0, 0) = 0``)."""
    p = torch.softmax(logits, dim=-1)
    return -torch.special.xlogy(p, p).sum(-1)


def token_logprobs(logits: torch.Tensor, tokens: Sequence[int]) -> tuple[list[float], list[float]]:
    """The model's log-prob of each token and the entropy of each distribution; logits [n, V], n == len(tokens)."""
    logp = torch.log_softmax(logits, dim=-1)  # [n, V]
    idx = torch.tensor(list(tokens), dtype=torch.long, device=logits.device)
    chosen = logp[torch.arange(len(tokens), device=logits.device), idx]
    return chosen.tolist(), entropy(logits).tolist()


def pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Greedy argmax at temperature 0, otherwise a temperature/top-p sample."""
    if temperature <= 0:
        return int(logits.argmax())
    return sample(probs_from_logits(logits, temperature, top_p), generator)


def prefill(model: torch.nn.Module, prompt_ids: Sequence[int], cache: DynamicCache) -> torch.Tensor:
    """Fill ``cache`` with the prompt; returns the logits [V] for the first new token."""
    return forward(model, prompt_ids, cache, last_only=True)[-1]


def decode_one_token(model: torch.nn.Module, token: int, cache: DynamicCache) -> torch.Tensor:
    """Feed one token after the cached prefix; returns the logits [V] for the next one."""
    return forward(model, [token], cache)[-1]


def check_request(model: torch.nn.Module, prompt_ids: Sequence[int], max_new_tokens: int, k: int = 0) -> None:
    """Reject requests the model cannot serve, naming the limit and the fix."""
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; pass at least one token (e.g. the BOS id)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and len(prompt_ids) + max_new_tokens + k > limit:
        raise ValueError(
            f"prompt ({len(prompt_ids)}) + max_new_tokens ({max_new_tokens}) + k ({k}) exceeds the model's "
            f"context of {limit} tokens; shorten the prompt or lower max_new_tokens"
        )


def target_stream(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Plain autoregressive decoding; yields ([token], [logprob], [entropy]) per step and returns the stats dict.

    ``stats``: a dict filled in place (complete when the stream ends or is closed early, e.g. at a stop string).
    """
    check_request(model, prompt_ids, max_new_tokens)
    stats = fresh_stats(stats, "target", 0, len(prompt_ids))
    t0 = time.perf_counter()
    t1, compute, out = None, 0.0, []
    try:
        with torch.inference_mode():
            cache = new_cache(model)
            logits = prefill(model, prompt_ids, cache)
            token = pick(logits, temperature, top_p, generator)
            stats["prefill_s"] = stats["time_to_first_token_s"] = time.perf_counter() - t0
            stats["target_forward_passes"] = 1
            out.append(token)
            yield [token], *token_logprobs(logits[None], [token])
            t1 = time.perf_counter()
            while len(out) < max_new_tokens and token not in stop_ids:
                ts = time.perf_counter()
                logits = decode_one_token(model, token, cache)
                token = pick(logits, temperature, top_p, generator)
                stats["target_forward_passes"] += 1
                out.append(token)
                lp = token_logprobs(logits[None], [token])
                compute += time.perf_counter() - ts  # the step's own work, not the consumer's time between yields
                yield [token], *lp
    finally:
        stats["decode_s"] = time.perf_counter() - t1 if t1 is not None else 0.0
        stats["decode_compute_s"] = compute
        steps = stats["target_forward_passes"] - 1
        stats["target_step_s"] = stats["plain_step_s"] = compute / steps if steps else None
        finish_stats(stats, out, stop_ids, t0)
    return stats


def fresh_stats(into: dict[str, Any] | None, mode: str, k: int, prompt_tokens: int) -> dict[str, Any]:
    """``new_stats`` written into ``into`` (a caller's dict read while the stream runs), or a new dict."""
    stats = new_stats(mode, k, prompt_tokens)
    if into is None:
        return stats
    into.clear()
    into.update(stats)
    return into


def new_stats(mode: str, k: int, prompt_tokens: int) -> dict[str, Any]:
    """A zeroed per-request stats dict (keys documented in the module docstring)."""
    return {
        "mode": mode,
        "k": k,
        "prompt_tokens": prompt_tokens,
        "new_tokens": 0,
        "finish_reason": "length",
        "time_to_first_token_s": 0.0,
        "prefill_s": 0.0,
        "decode_s": 0.0,
        "decode_compute_s": 0.0,
        "total_s": 0.0,
        "tokens_per_second": 0.0,
        "target_forward_passes": 0,
        "draft_forward_passes": 0,
        "num_spec_steps": 0,
        "num_draft_tokens": 0,
        "num_accepted_draft_tokens": 0,
        "num_rejected_draft_tokens": 0,
        "num_rejection_steps": 0,
        "mean_acceptance_length": None,
        "draft_acceptance_rate": None,
        "alpha": None,
        "acceptance_histogram": [],
        "proposed_per_position": [],
        "target_step_s": None,
        "plain_step_s": None,
        "verify_step_s": None,
        "draft_step_s": None,
        "c": None,
        "v": None,
        "cost_source": None,
        "expected_tokens": None,
        "predicted_speedup": None,
        "measured_speedup": None,
        "spec_auto_off": False,
        "auto_off_at_token": None,
        "auto_off_alpha": None,
    }


def finish_stats(stats: dict[str, Any], out: list[int], stop_ids: Sequence[int], t0: float) -> dict[str, Any]:
    """Fill the totals once generation has ended."""
    stats["total_s"] = time.perf_counter() - t0
    stats["new_tokens"] = len(out)
    stats["finish_reason"] = "stop" if out and out[-1] in stop_ids else "length"
    stats["tokens_per_second"] = len(out) / stats["total_s"] if stats["total_s"] > 0 else 0.0
    return stats


class Stream:
    """Iterable of token chunks from one request; ``stats`` is set when iteration ends.

    ``live``: the dict the generator fills in place (when it was given one), so :meth:`close` still leaves the stats
    of the steps that ran.
    """

    def __init__(self, gen: Iterator[Chunk], live: dict[str, Any] | None = None) -> None:
        self._gen = gen
        self.live = live
        self.stats: dict[str, Any] | None = None
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.entropies: list[float] = []

    def __iter__(self) -> Iterator[list[int]]:
        try:
            while True:
                chunk, logprobs, entropies = next(self._gen)
                self.tokens.extend(chunk)
                self.logprobs.extend(logprobs)
                self.entropies.extend(entropies)
                yield chunk
        except StopIteration as stop:
            self.stats = stop.value

    def close(self) -> dict[str, Any] | None:
        """Stop generating (the generator finalises its stats); returns the stats so far."""
        close = getattr(self._gen, "close", None)
        if close:
            close()
        if self.stats is None and self.live is not None:
            self.stats = self.live
        return self.stats

    def run(self) -> tuple[list[int], dict[str, Any]]:
        """Consume the stream; returns (tokens, stats)."""
        for _ in self:
            pass
        assert self.stats is not None
        return self.tokens, self.stats
