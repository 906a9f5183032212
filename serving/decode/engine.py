"""One request through a target model, alone or with a drafter: the :class:`Engine` the server and benchmarks call.

See :mod:`serving.decode.generate` for the stream protocol and the stats keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from serving.decode.generate import MODES, Chunk, Mode, Stream, target_stream
from serving.decode.speculative import DraftModel, PromptLookup, speculative_stream


class Engine:
    """One target model (and optionally a draft model) answering requests in any :data:`MODES`.

    Args:
        target: HF causal LM on its device, in eval mode.
        draft: smaller HF causal LM sharing the target's tokenizer, needed for ``mode="speculative"``.
        prompt_lookup_ngram: longest n-gram matched by the prompt-lookup drafter (it tries n down to 1).
    """

    def __init__(
        self, target: torch.nn.Module, draft: torch.nn.Module | None = None, prompt_lookup_ngram: int = 3
    ) -> None:
        self.target = target.eval()
        self.draft = draft.eval() if draft is not None else None
        self.prompt_lookup_ngram = prompt_lookup_ngram
        self.target_step_s: float | None = None  # moving average of target-only decode step time

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
    ) -> Stream:
        """Start one request; iterate the returned :class:`Stream` for token chunks, then read ``.stats``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        gen = None if seed is None else torch.Generator(device=self.target.device).manual_seed(seed)
        stop = tuple(stop_ids)
        if mode == "target":
            inner = target_stream(self.target, prompt_ids, max_new_tokens, temperature, top_p, stop, gen)
            return Stream(self._record_target(inner))
        if mode == "speculative":
            if self.draft is None:
                raise ValueError("mode='speculative' needs a draft model; load one or use mode='prompt_lookup'")
            drafter = DraftModel(self.draft)
        else:
            drafter = PromptLookup(max_ngram=self.prompt_lookup_ngram)
        inner = speculative_stream(
            self.target, drafter, prompt_ids, max_new_tokens, k, temperature, top_p, stop, gen, adaptive_k
        )
        return Stream(self._add_measured_speedup(inner))

    def generate(self, prompt_ids: Sequence[int], **kwargs: Any) -> tuple[list[int], dict[str, Any]]:
        """Run one request to the end; returns (new token ids, stats). Keyword arguments as :meth:`stream`."""
        return self.stream(prompt_ids, **kwargs).run()

    def _record_target(self, inner: Iterator[Chunk]) -> Iterator[Chunk]:
        stats = yield from inner
        step = stats["target_step_s"]
        if step:
            self.target_step_s = step if self.target_step_s is None else 0.8 * self.target_step_s + 0.2 * step
        return stats

    def _add_measured_speedup(self, inner: Iterator[Chunk]) -> Iterator[Chunk]:
        stats = yield from inner
        decoded = stats["new_tokens"] - 1
        if self.target_step_s and decoded > 0 and stats["decode_s"] > 0:
            stats["measured_speedup"] = self.target_step_s * decoded / stats["decode_s"]
        return stats
