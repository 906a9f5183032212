"""The interface the server and router generate through, and a plain Hugging Face implementation of it.

A :class:`Backend` turns prompt ids into a :class:`Generation`: an iterator of :class:`Step` (token id, its log-prob
and the entropy of the distribution it came from) whose ``stats`` dict is complete once the iterator is exhausted
(speculative decoding counters, forward passes). The router needs the per-token log-probs for its confidence; the
server needs the stream for SSE. ``load_backend`` serves a configured model through ``serving.decode.generate.Engine``
(target-only, speculative or prompt-lookup, quantized as configured); :class:`HFBackend` is a plain KV-cached decode
loop over any local HF model, kept as the reference the Engine path is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from serving.api.config import CatalogError, ModelSpec
from serving.decode.batch import BatchEngine, BatchStream
from serving.decode.engine import Engine
from serving.decode.generate import entropy as token_entropy
from serving.decode.speculative import AutoOff, DraftModel, PromptLookup
from serving.models import load_model
from serving.openmp_pool import ForwardLock
from tokenwise.vocab import KeptVocab

# a probe prompt for measuring a model pair's step costs at load: prose and code, like most traffic
CALIBRATION_PROBE = (
    "The quick brown fox jumps over the lazy dog. Once upon a time there was a small town by the river.\n"
    "def mean(xs):\n    return sum(xs) / len(xs)\n"
)


@dataclass
class GenParams:
    """Per-request decoding settings."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # vLLM's extension: exactly max_tokens (measurement compares equal-length outputs)
    scores: bool = True  # each Step's logprob/entropy; False lets the batching engine skip them (NaN, a vocabulary
    # pass per token saved): the server asks only where a router reads them (cascade previews)


@dataclass
class Step:
    """One generated token with the model's own log-prob of it and the entropy (nats) of its distribution."""

    token_id: int
    logprob: float
    entropy: float


@dataclass
class Generation:
    """An iterator of steps; ``stats`` is final once iteration ends (or :meth:`close` is called).

    ``abort`` (batched backends): ends the request at the next token boundary from any thread, freeing its KV blocks
    while the consuming thread may still be waiting for a step.
    """

    steps: Iterator[Step]
    stats: dict[str, Any] = field(default_factory=dict)
    abort: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[Step]:
        return self.steps

    def close(self) -> None:
        close = getattr(self.steps, "close", None)
        if close:
            close()


class Backend(Protocol):
    name: str
    eos_ids: set[int]
    max_context: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...
    def generate(self, prompt_ids: list[int], params: GenParams) -> Generation: ...
    def logprob_sum(self, context_ids: list[int], target_ids: list[int]) -> float: ...


def simple_chat_prompt(messages: list[dict[str, str]]) -> str:
    """A plain-text chat layout for models without a chat template: ``role: content`` lines, then ``assistant:``."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


class HFBackend:
    """A causal LM from a local HF directory with a manual KV-cached decode loop (one sequence per call)."""

    def __init__(self, name: str, path: str, tokenizer: str | None = None, max_context: int = 512, threads: int = 0):
        import torch  # heavy: deferred until used
        from transformers import AutoModelForCausalLM  # heavy: deferred until used

        self.name, self.max_context = name, max_context
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.tok = _load_hf_tokenizer(tokenizer or path)
        self._setup_vocab(path)
        eos = self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        # one forward at a time per model (per process on CPU): bounds CPU threads and activation memory
        self._lock = ForwardLock.for_device(self.model.device)

    def _setup_vocab(self, path: str) -> None:
        """Respelling for a kept (local) vocabulary and the BOS every prompt starts with when the tokenizer adds one
        by default (Gemma: a prompt without ``<bos>`` is far out of distribution)."""
        self.kept = KeptVocab.find(path) if Path(path).is_dir() else None
        if self.kept is not None:
            self.kept.attach(self.tok)
        ids = self.tok("a")["input_ids"]
        bos = self.tok.bos_token_id
        self.prefix = [bos] if bos is not None and ids and ids[0] == bos else []

    def with_prefix(self, ids: list[int]) -> list[int]:
        """``ids`` preceded by the model's BOS when it expects one (and they do not start with it)."""
        return ids if not self.prefix or ids[: len(self.prefix)] == self.prefix else self.prefix + ids

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def encode(self, text: str) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        return self.kept.respell(ids) if self.kept is not None else ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return simple_chat_prompt(messages)

    def generate(self, prompt_ids: list[int], params: GenParams) -> Generation:
        stats: dict[str, Any] = {"forward_passes": 0}
        return Generation(self._decode(prompt_ids, params, stats), stats)

    def _forward(self, ids: list[int], past: Any) -> tuple[Any, Any]:
        import torch  # heavy: deferred until used

        with self._lock, torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([ids], device=self.model.device), past_key_values=past, use_cache=True
            )
        return out.logits[0, -1].float(), out.past_key_values

    def _decode(self, prompt_ids: list[int], params: GenParams, stats: dict) -> Iterator[Step]:
        import torch  # heavy: deferred until used

        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        logits, past = self._forward(self.with_prefix(prompt_ids), None)
        stats["forward_passes"] += 1
        for i in range(params.max_tokens):
            logp = torch.log_softmax(logits, -1)
            tok = _pick(logits, params, gen)
            entropy = float(token_entropy(logits))
            yield Step(tok, float(logp[tok]), entropy)
            if (tok in self.eos_ids and not params.ignore_eos) or i + 1 == params.max_tokens:
                return
            logits, past = self._forward([tok], past)
            stats["forward_passes"] += 1

    def logprob_sum(self, context_ids: list[int], target_ids: list[int]) -> float:
        """Sum of natural-log probabilities of ``target_ids`` following ``context_ids`` (one forward pass)."""
        import torch  # heavy: deferred until used

        ids = (self.with_prefix(context_ids) + target_ids)[-self.max_context :]
        n = len(target_ids)
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0].float()
        logp = torch.log_softmax(logits[-n - 1 : -1], -1)  # [n, V]: position t predicts token t+1
        return float(logp.gather(1, torch.tensor(ids[-n:], device=logp.device)[:, None]).sum())


def _pick(logits: Any, params: GenParams, gen: Any) -> int:
    import torch  # heavy: deferred until used

    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, -1)
    if params.top_p < 1.0:
        sorted_p, idx = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < params.top_p
        probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def _load_hf_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # heavy: deferred until used

    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(p))
    return AutoTokenizer.from_pretrained(str(p))


def load_model_tokenizer(spec: ModelSpec) -> Any:
    """The catalog model's own tokenizer; :class:`CatalogError` naming the model when it cannot be loaded."""
    path = spec.tokenizer or spec.path
    try:
        return _load_hf_tokenizer(path)
    except Exception as e:  # any loader failure (missing file, corrupt JSON, unknown class) is a config error
        raise CatalogError(f"model {spec.name!r}: its tokenizer at {path} cannot be loaded "
                           f"({type(e).__name__}: {str(e)[:200]}); fix its path/tokenizer in the catalog") from e


class EngineBackend(HFBackend):
    """A configured model served through ``serving.decode.generate.Engine`` (target-only, draft-model speculative or
    prompt-lookup decoding; quantized weights when configured). Steps carry the target's log-prob and entropy."""

    def __init__(self, spec: ModelSpec):

        self.name, self.max_context, self.spec = spec.name, spec.max_context, spec
        self.tok = load_model_tokenizer(spec)  # first: a catalog error names the model before weights load
        self.model = _load_model(spec.path, spec.quantization)
        self._setup_vocab(spec.path)
        draft = None
        if spec.speculative.method == "draft":
            if not spec.speculative.draft:
                raise ValueError(
                    f"model {spec.name!r}: speculative.method=draft needs speculative.draft (a model dir)"
                )
            draft = _load_model(spec.speculative.draft, spec.quantization)
        sp = spec.speculative
        auto_off = AutoOff(sp.min_speedup, sp.auto_off_after, sp.probe_overhead) if sp.auto_off else None
        self.engine = Engine(self.model, draft, prompt_lookup_ngram=sp.ngram, auto_off=auto_off)
        self.mode = {"none": "target", "draft": "speculative", "prompt_lookup": "prompt_lookup"}[sp.method]
        eos = self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._lock = ForwardLock.for_device(self.model.device)
        self.batch = _batch_engine(spec, self.model, draft) if spec.batching.enabled else None
        # c and v of this pair, for every request's predicted speedup and auto-off (the Engine path only: the batch
        # engine speculates while the batch is small, without auto-off)
        if self.mode != "target" and self.batch is None:
            self.costs = self.engine.calibrate(self._probe(), self.mode, sp.k, contexts=self._contexts(sp.k))

    def _probe(self) -> list[int]:
        return self.encode(CALIBRATION_PROBE) or [0]

    def _contexts(self, k: int) -> tuple[int, ...]:
        """A short and a long context (a verify pass's relative cost grows with the context it attends over)."""
        limit = min(self.max_context, getattr(self.model.config, "max_position_embeddings", self.max_context))
        room = limit - 12 * (k + 1) - 2 - k  # measure_costs runs 12 steps of up to k + 1 tokens after the probe
        return tuple(sorted({max(4, min(32, room)), max(4, min(room, limit // 2))}))

    def generate(self, prompt_ids: list[int], params: GenParams) -> Generation:
        if self.batch is not None:
            return self._generate_batched(prompt_ids, params)
        stream = self.engine.stream(
            self.with_prefix(prompt_ids),
            max_new_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            mode=self.mode,
            k=self.spec.speculative.k,
            stop_ids=() if params.ignore_eos else tuple(self.eos_ids),
            seed=params.seed if params.temperature > 0 else None,
        )
        stats: dict[str, Any] = {}
        return Generation(self._steps(stream, stats), stats)

    def _steps(self, stream: Any, stats: dict) -> Iterator[Step]:
        it = iter(stream)
        done = 0
        try:
            while True:
                with self._lock:  # one forward at a time per model (the Engine's models are shared)
                    chunk = next(it, None)
                if chunk is None:
                    break
                for j in range(done, len(stream.tokens)):
                    yield Step(stream.tokens[j], stream.logprobs[j], stream.entropies[j])
                done = len(stream.tokens)
        finally:  # also when closed early (stop string, client gone): the stats of the steps that ran
            with self._lock:
                final = stream.stats if stream.stats is not None else stream.close()
            stats.update(final or {})
            stats["forward_passes"] = stats.get("target_forward_passes", 0)

    def _generate_batched(self, prompt_ids: list[int], params: GenParams) -> Generation:
        stream = self.batch.stream(
            self.with_prefix(prompt_ids),
            max_new_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop_ids=() if params.ignore_eos else tuple(self.eos_ids),
            seed=params.seed if params.temperature > 0 else None,
            scores=params.scores,
        )
        stats: dict[str, Any] = {}
        return Generation(_batched_steps(stream, stats), stats, abort=stream.abort)


def _batch_engine(spec: ModelSpec, model: Any, draft: Any) -> BatchEngine:
    """The continuous-batching engine for one model, speculating at small batch as configured."""
    b, sp = spec.batching, spec.speculative
    drafters = {"none": None, "draft": partial(DraftModel, draft), "prompt_lookup": partial(PromptLookup, sp.ngram)}
    return BatchEngine(
        model,
        kv_budget_tokens=b.kv_budget_tokens,
        block_size=b.block_size,
        max_batch=b.max_batch,
        prefix_caching=b.prefix_caching,
        prefill_chunk=b.prefill_chunk,
        pack_prefill=b.pack_prefill,
        pad_head=b.pad_head_rows,
        screen_head=b.screen_head,
        drafter=drafters[sp.method],
        k=sp.k,
        speculate_max_batch=b.speculate_max_batch,
        step_lock=ForwardLock.for_device(model.device),  # CPU: takes turns with every other model's forwards
    )


def _batched_steps(stream: BatchStream, stats: dict) -> Iterator[Step]:
    done = 0
    try:
        for _ in stream:
            for j in range(done, len(stream.tokens)):
                yield Step(stream.tokens[j], stream.logprobs[j], stream.entropies[j])
            done = len(stream.tokens)
    finally:  # also when closed early (stop string, client gone): abort, then the stats of the steps that ran
        stats.update(stream.close())
        stats["forward_passes"] = stats.get("target_forward_passes", 0)


def _load_model(path: str, quantization: str) -> Any:

    return load_model(path, quantization=quantization)


def load_backend(spec: ModelSpec) -> Backend:
    """The generation backend for one configured model: the Engine (speculative/quantized as configured)."""
    return EngineBackend(spec)


def bits_per_byte(logprob_sum: float, n_bytes: int) -> float:
    """Bits per UTF-8 byte of a text whose tokens have this summed natural-log probability."""
    return -logprob_sum / math.log(2) / max(n_bytes, 1)
