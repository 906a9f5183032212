"""One request through a target model, alone or with a drafter: the :class:`Engine` the server and benchmarks call.

See :mod:`serving.decode.generate` for the stream protocol and the stats keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from serving.decode.generate import MODES, Chunk, Mode, Stream, target_stream
from serving.decode.speculative import AutoOff, DraftModel, PromptLookup, SpecCosts, measure_costs, speculative_stream


class Engine:
    """One target model (and optionally a draft model) answering requests in any :data:`MODES`.

    Args:
        target: HF causal LM on its device, in eval mode.
        draft: smaller HF causal LM sharing the target's tokenizer, needed for ``mode="speculative"``.
        prompt_lookup_ngram: longest n-gram matched by the prompt-lookup drafter (it tries n down to 1).
        auto_off: switch drafting off in requests whose acceptance predicts a loss (needs :meth:`calibrate`).
    """

    def __init__(
        self,
        target: torch.nn.Module,
        draft: torch.nn.Module | None = None,
        prompt_lookup_ngram: int = 3,
        auto_off: AutoOff | None = None,
    ) -> None:
        self.target = target.eval()
        self.draft = draft.eval() if draft is not None else None
        self.prompt_lookup_ngram = prompt_lookup_ngram
        self.auto_off = auto_off
        self.target_step_s: float | None = None  # moving average of target-only decode step time (compute)
        self.costs: dict[str, SpecCosts] = {}  # per speculative mode: the pair's measured c and v

    def calibrate(self, probe_ids: Sequence[int], mode: Mode, k: int = 4, **kwargs: Any) -> SpecCosts:
        """Measure this model pair's plain step, verify pass and draft token times (c and v) on a probe prompt (at the
        context lengths ``contexts=``, see :func:`measure_costs`); later requests in ``mode`` predict their speedup
        with them, at their own context length (and may switch drafting off)."""
        self.costs[mode] = measure_costs(self.target, self._drafter(mode), probe_ids, k, **kwargs)
        self.target_step_s = self.target_step_s or self.costs[mode].plain_step_s
        return self.costs[mode]

    def _drafter(self, mode: str) -> DraftModel | PromptLookup:
        if mode == "speculative":
            if self.draft is None:
                raise ValueError("mode='speculative' needs a draft model; load one or use mode='prompt_lookup'")
            return DraftModel(self.draft)
        return PromptLookup(max_ngram=self.prompt_lookup_ngram)

    def stream(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        mode: Mode = "target",
        k: int = 4,
        stop_ids: Sequence[int] = (),
        seed: int | None = None,
        adaptive_k: bool = False,
        auto_off: AutoOff | None = None,
    ) -> Stream:
        """Start one request; iterate the returned :class:`Stream` for token chunks, then read ``.stats``.

        ``auto_off`` overrides the engine's rule for this request (``AutoOff(min_speedup=0)`` never switches off).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        gen = None if seed is None else torch.Generator(device=self.target.device).manual_seed(seed)
        stop = tuple(stop_ids)
        live: dict[str, Any] = {}
        if mode == "target":
            inner = target_stream(self.target, prompt_ids, max_new_tokens, temperature, top_p, stop, gen, live)
            return Stream(self._record_target(inner), live)
        inner = speculative_stream(
            self.target, self._drafter(mode), prompt_ids, max_new_tokens, k, temperature, top_p, stop, gen,
            adaptive_k, self._costs(mode), self.auto_off if auto_off is None else auto_off, live,
        )  # fmt: skip
        return Stream(inner, live)

    def _costs(self, mode: str) -> SpecCosts | None:
        """The calibrated costs; else the plain step time of earlier target-only requests (c and v then come from each
        request's own step times); else None (no prediction, no auto-off)."""
        if mode in self.costs:
            return self.costs[mode]
        if self.target_step_s:
            return SpecCosts(self.target_step_s, None, None, 0, source="request")
        return None

    def generate(self, prompt_ids: Sequence[int], **kwargs: Any) -> tuple[list[int], dict[str, Any]]:
        """Run one request to the end; returns (new token ids, stats). Keyword arguments as :meth:`stream`."""
        return self.stream(prompt_ids, **kwargs).run()

    def _record_target(self, inner: Iterator[Chunk]) -> Iterator[Chunk]:
        stats = yield from inner
        step = stats["target_step_s"]
        if step:
            self.target_step_s = step if self.target_step_s is None else 0.8 * self.target_step_s + 0.2 * step
        return stats
