"""Continuous batching: one scheduler thread runs every live request of a model through shared forward passes.

Requests join and leave the running batch at token boundaries. Each loop iteration:

1. takes new requests and aborts (a client gone frees its KV blocks here, before the next forward);
2. admits waiting requests in arrival order while the batch has room (``max_batch``) and the KV pool has every block
   the request may need (prompt + max_tokens; see :mod:`serving.decode.prefix_cache`), reusing cached prefix blocks;
3. runs one forward pass over prompt chunks of admitted requests (at most ``prefill_chunk`` prompt tokens, several
   prompts together) and one decode token of every running request, packed into one ragged sequence with a
   block-diagonal causal mask (see :func:`serving.decode.batch_cache.ragged_batch`): chunked prefill, so a new
   prompt neither stalls the running requests nor costs a pass of its own; without prompts to prefill, one decode
   forward ([B, 1] over rows of different lengths). Each row has its own temperature, top-p, seed, stop ids and
   max_tokens. When ``speculate_max_batch`` allows and few requests run, each running request takes one
   speculative step instead (a drafter proposes ``k`` tokens, one target pass verifies them: speculate when the
   batch is small, batch when it is large).

Greedy output is the model's batch-1 greedy output (rows never see each other's tokens; tested in float64). The
per-request stream and stats follow :mod:`serving.decode.generate` (same keys), plus ``cached_tokens`` (prompt tokens
whose KV came from the prefix cache), ``queue_s`` (waiting for a batch slot and KV blocks) and ``mean_batch_size``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from serving.decode.batch_cache import PagedKV, attention_masks, build_batch, ragged_batch, ragged_masks
from serving.decode.generate import check_request, new_stats, pick, probs_from_logits, token_logprobs
from serving.decode.head_rows import HeadPadding, pad_head_rows
from serving.decode.head_screen import install_head_screen
from serving.decode.prefix_cache import BlockManager, block_hashes, blocks_for
from serving.decode.ragged_attention import RaggedLayout, use_ragged_attention
from serving.decode.speculative import DraftModel, PromptLookup, greedy_verify, rejection_sample

log = logging.getLogger(__name__)

Drafter = DraftModel | PromptLookup
NAN = float("nan")  # the log-prob and entropy of a token whose request asked for no scores
IDLE_EXIT_S = 30.0  # the scheduler thread ends after this long without requests (the next one starts it again)


class KVBudgetExceeded(ValueError):
    """A request that could never fit the KV budget (prompt + max_tokens > budget); the server answers 400."""


@dataclass
class Seq:
    """One request inside the scheduler."""

    sid: int
    prompt: list[int]
    max_new: int
    temperature: float
    top_p: float
    stop_ids: tuple[int, ...]
    generator: torch.Generator | None
    events: queue.SimpleQueue
    stats: dict[str, Any]
    t_submit: float
    scores: bool = True  # each token's log-prob and entropy (False: NaN, no pass over the vocabulary for them)
    tokens: list[int] = field(default_factory=list)  # prompt + generated
    table: list[int] = field(default_factory=list)  # KV block table
    computed: int = 0  # tokens whose KV is in the pool
    drafter: Drafter | None = None
    rows: int = 0  # sum of batch sizes over the decode steps this request was in
    steps: int = 0
    t_first: float | None = None
    rejections: int = 0

    @property
    def out(self) -> list[int]:
        return self.tokens[len(self.prompt) :]


class BatchStream:
    """The consumer side of one request: iterate for token chunks; ``stats`` is set when iteration ends.

    Same surface as :class:`serving.decode.generate.Stream` (``tokens``, ``logprobs``, ``entropies``, ``run``);
    :meth:`abort` (thread-safe) or :meth:`close` ends the request at the next token boundary and frees its KV blocks.
    """

    def __init__(self, engine: BatchEngine, seq: Seq) -> None:
        self._engine, self._seq = engine, seq
        self.stats: dict[str, Any] | None = None
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.entropies: list[float] = []

    def __iter__(self) -> Iterator[list[int]]:
        while self.stats is None:
            ev = self._seq.events.get()
            if ev[0] == "chunk":
                self.tokens.extend(ev[1])
                self.logprobs.extend(ev[2])
                self.entropies.extend(ev[3])
                yield ev[1]
            elif ev[0] == "done":
                self.stats = ev[1]
            else:
                raise ev[1]

    def run(self) -> tuple[list[int], dict[str, Any]]:
        """Consume the stream; returns (tokens, stats)."""
        for _ in self:
            pass
        assert self.stats is not None
        return self.tokens, self.stats

    def abort(self) -> None:
        """Stop this request at the next token boundary (any thread); its stream then ends with the stats so far."""
        self._engine.abort(self._seq.sid)

    def close(self) -> dict[str, Any]:
        """Abort and wait for the final stats (finish_reason ``abort`` unless it had already ended)."""
        if self.stats is None:
            self.abort()
            for _ in self:
                pass
        assert self.stats is not None
        return self.stats


class BatchEngine:
    """Continuous batching over one HF causal LM, with a paged KV cache and automatic prefix caching.

    Args:
        model: HF causal LM on its device, eval mode; its attention layers must call ``past_key_values.update``.
        kv_budget_tokens: KV cache size in tokens (allocated at start); requests beyond it wait.
        block_size: tokens per KV block (and per prefix-cache hash).
        max_batch: most requests prefilling or decoding at once.
        prefix_caching: reuse the KV of cached prompt-prefix blocks.
        prefill_chunk: most prompt tokens per forward pass (bounds how much a prompt slows the running requests' step).
        drafter: makes a per-request drafter (:class:`DraftModel`/:class:`PromptLookup`); None = never speculate.
        k: draft tokens per speculative step.
        speculate_max_batch: speculate (one verify pass per request) while at most this many requests are live.
        per_row_attention: in packed passes, attend row by row (:mod:`serving.decode.ragged_attention`; switches an
            SDPA model to ``tokenwise_ragged``, which is SDPA for every other call) instead of one dense masked SDPA.
        pack_prefill: prompt chunks ride in the decode pass (one packed pass per step); False: each prompt chunk
            gets a pass of its own before the decode pass (the running requests wait), for comparison.
        pad_head: pad the LM head's rows to the count its GEMM runs fastest at, measured at start
            (:mod:`serving.decode.head_rows`; a few seconds for a large vocabulary, nothing for a small one).
        screen_head: passes whose every row is greedy and asks no scores pick their tokens through an int8 screen
            of the LM head and exact fp32 logits of the few candidate rows (:mod:`serving.decode.head_screen`; the
            same tokens, a fraction of the head's reads; installed for large fp32 vocabularies on CPU only).
        step_lock: held around every scheduler step (a context manager), e.g. the process's CPU
            :class:`serving.openmp_pool.ForwardLock`, so models sharing the cores take turns; None = no lock.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        kv_budget_tokens: int = 8192,
        block_size: int = 16,
        max_batch: int = 16,
        prefix_caching: bool = True,
        prefill_chunk: int = 512,
        drafter: Callable[[], Drafter] | None = None,
        k: int = 4,
        speculate_max_batch: int = 0,
        per_row_attention: bool = True,
        pack_prefill: bool = True,
        pad_head: bool = True,
        screen_head: bool = True,
        step_lock: contextlib.AbstractContextManager | None = None,
    ) -> None:
        self.model = model.eval()
        self.step_lock = step_lock if step_lock is not None else contextlib.nullcontext()
        self.kv_budget_tokens = blocks_for(kv_budget_tokens, block_size) * block_size
        self.blocks = BlockManager(self.kv_budget_tokens // block_size, block_size, prefix_caching)
        self.pool = PagedKV(self.blocks.num_blocks, block_size)
        self.max_batch, self.prefill_chunk, self.k = max_batch, prefill_chunk, k
        self.drafter, self.speculate_max_batch = drafter, speculate_max_batch if drafter else 0
        self.dtype = next(model.parameters()).dtype
        attention_masks(model.config, torch.ones(1, 1, dtype=torch.bool), 1, self.dtype)  # unsupported layer types
        self.per_row_attention = per_row_attention and use_ragged_attention(model)
        self.pack_prefill = pack_prefill
        self.waiting: deque[Seq] = deque()
        self.prefilling: list[Seq] = []
        self.decoding: list[Seq] = []
        counters = ("decode_steps", "decode_rows", "spec_steps", "prefill_tokens", "prefill_forwards", "mixed_steps",
                    "screened_passes")
        self.counters = dict.fromkeys((*counters, "finished", "aborted"), 0)
        self._ids = itertools.count()
        self._inbox: list[Seq] = []
        self._aborts: set[int] = set()
        self._cv = threading.Condition()
        self._closed = False
        self._warm_up()
        self.head_screen = install_head_screen(model) if screen_head else None
        self.head_padding = _head_padding(model, max_batch) if pad_head else None
        self._thread: threading.Thread | None = None  # started by the first request, ends after IDLE_EXIT_S idle

    # ---- client side (any thread) ----------------------------------------------------------------------------------

    def stream(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop_ids: Sequence[int] = (),
        seed: int | None = None,
        scores: bool = True,
    ) -> BatchStream:
        """Queue one request; iterate the returned :class:`BatchStream` for token chunks, then read ``.stats``.

        ``scores``: compute each token's log-prob and entropy (the stream's ``logprobs``/``entropies``; NaN when
        False, which saves a softmax-and-entropy pass over the vocabulary per token)."""
        check_request(self.model, prompt_ids, max_new_tokens)
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        need = len(prompt_ids) + max_new_tokens
        if need > self.kv_budget_tokens:
            raise KVBudgetExceeded(
                f"the request needs {need} KV cache tokens (prompt {len(prompt_ids)} + max_tokens {max_new_tokens}); "
                f"the KV budget is {self.kv_budget_tokens} tokens; shorten the prompt or lower max_tokens"
            )
        gen = None
        if seed is not None and temperature > 0:
            gen = torch.Generator(device=self.model.device).manual_seed(seed)
        seq = Seq(
            next(self._ids), list(prompt_ids), max_new_tokens, temperature, top_p, tuple(stop_ids), gen,
            queue.SimpleQueue(), new_stats("target", 0, len(prompt_ids)),
            time.perf_counter(), scores, tokens=list(prompt_ids),
        )  # fmt: skip
        with self._cv:
            if self._closed:
                raise RuntimeError("the batch engine is closed")
            self._inbox.append(seq)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="batch-engine", daemon=True)
                self._thread.start()
            self._cv.notify()
        return BatchStream(self, seq)

    def generate(self, prompt_ids: Sequence[int], **kwargs: Any) -> tuple[list[int], dict[str, Any]]:
        """Run one request to the end; returns (new token ids, stats). Keyword arguments as :meth:`stream`."""
        return self.stream(prompt_ids, **kwargs).run()

    def abort(self, sid: int) -> None:
        """End request ``sid`` at the next token boundary and free its blocks (no-op once it has finished)."""
        with self._cv:
            self._aborts.add(sid)
            self._cv.notify()

    def snapshot(self) -> dict[str, Any]:
        """Load and cache figures now (read without locking: a consistent-enough view for metrics)."""
        b = self.blocks
        return {
            "running": len(self.decoding) + len(self.prefilling),
            "waiting": len(self.waiting) + len(self._inbox),
            "kv_blocks": b.num_blocks,
            "kv_blocks_used": b.num_used,
            "kv_usage": b.num_used / b.num_blocks,
            "kv_budget_tokens": self.kv_budget_tokens,
            "kv_pool_bytes": self.pool.bytes(),
            "prefix_cache_queries": b.stats.queries,
            "prefix_cache_hits": b.stats.hits,
            "prefix_cache_hit_rate": b.stats.hit_rate,
            **self.counters,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop the scheduler thread; requests still live end with an error."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ---- scheduler thread ------------------------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Allocate every layer's KV pool now (one forward on block 0), so memory is flat from the first request."""
        table = self.blocks.take([], 1, 0)
        with torch.inference_mode():
            self._forward([(table, 0, 1)], [[0]], keep_all=False)
        self.blocks.release(table)
        self.blocks.stats.queries = 0

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._has_work():
                    if not self._cv.wait(IDLE_EXIT_S) and not self._has_work():
                        self._thread = None  # idle: end, so an engine nobody uses any more can be freed
                        return
                if self._closed:
                    break
                inbox, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, set()
            self.waiting.extend(inbox)
            self._apply_aborts(aborts)
            try:
                self._admit()
                with self.step_lock, torch.inference_mode():
                    self._step()
            except Exception as e:  # a failed forward fails the requests in flight, not the server
                log.exception("batch step failed; failing %d live requests", len(self.prefilling) + len(self.decoding))
                for s in self.prefilling + self.decoding:
                    self._end(s, None, error=e)
        for s in list(self.waiting) + self.prefilling + self.decoding + self._inbox:
            s.events.put(("error", RuntimeError("the batch engine was closed")))

    def _has_work(self) -> bool:
        return bool(self._closed or self._inbox or self._aborts or self._busy())

    def _busy(self) -> bool:
        return bool(self.prefilling or self.decoding or (self.waiting and self._room()))

    def _room(self) -> bool:
        return len(self.prefilling) + len(self.decoding) < self.max_batch

    def _apply_aborts(self, sids: set[int]) -> None:
        if not sids:
            return
        for s in [s for s in self.waiting if s.sid in sids]:
            self.waiting.remove(s)
            self._end(s, "abort")
        for s in [s for s in self.prefilling + self.decoding if s.sid in sids]:
            self._end(s, "abort")

    def _admit(self) -> None:
        bs = self.blocks.block_size
        while self.waiting and self._room():
            s = self.waiting[0]
            hashes = block_hashes(s.prompt, bs)
            cached = self.blocks.match(hashes, len(s.prompt))
            n_new = blocks_for(len(s.prompt) + s.max_new, bs) - len(cached)
            if not self.blocks.can_take(cached, n_new):
                return  # first come, first served: later requests wait behind the head of the queue
            self.waiting.popleft()
            s.table = self.blocks.take(cached, n_new, len(s.prompt))
            s.computed = len(cached) * bs
            s.stats["cached_tokens"] = s.computed
            s.stats["queue_s"] = time.perf_counter() - s.t_submit
            self.prefilling.append(s)

    def _step(self) -> None:
        """One scheduler iteration: speculate (small batch) or decode every running request, and prefill prompt
        chunks of admitted requests, all plain rows in one forward pass."""
        plain = list(self.decoding)
        if plain and len(self.decoding) + len(self.prefilling) <= self.speculate_max_batch:
            plain = [s for s in plain if not self._speculate(s)]
        pieces, budget = [], self.prefill_chunk
        for s in self.prefilling:
            n = min(len(s.prompt) - s.computed, budget)
            if n <= 0:
                break
            pieces.append((s, n))
            budget -= n
        if pieces and not self.pack_prefill:  # a pass per prompt chunk, then one decode pass (issue 20's first cut)
            for piece in pieces:
                self._mixed([piece], [])
            plain = [s for s in self.decoding if s in plain or s.steps == 0]
            pieces = []
        if pieces:
            self._mixed(pieces, plain)
        elif plain:
            self._decode(plain)

    def _mixed(self, pieces: list[tuple[Seq, int]], plain: list[Seq]) -> None:
        """One packed forward: a prompt chunk of each request in ``pieces`` and one decode token of each in ``plain``
        (chunked prefill: running requests keep decoding while prompts are prefilled, and several prompts share a
        pass). A request whose prompt is complete gets its first token and starts decoding at the next step."""
        rows = [(s.table, s.computed, n) for s, n in pieces] + [(s.table, s.computed, 1) for s in plain]
        ids = [s.prompt[s.computed : s.computed + n] for s, n in pieces] + [[s.tokens[-1]] for s in plain]
        finishing = [s.computed + n == len(s.prompt) for s, n in pieces]
        keep = [i for i, f in enumerate(finishing) if f] + list(range(len(pieces), len(rows)))
        t0 = time.perf_counter()
        with self._screening([s for (s, _), f in zip(pieces, finishing, strict=True) if f] + plain):
            logits = self._forward_ragged(rows, ids, keep)  # [len(keep), V]
        dt = time.perf_counter() - t0
        self.counters["mixed_steps"] += bool(plain)
        self.counters["prefill_forwards"] += 1
        out = iter(range(len(keep)))
        for (s, n), fin in zip(pieces, finishing, strict=True):
            s.computed += n
            s.stats["target_forward_passes"] += 1
            s.stats["prefill_s"] += dt
            self.counters["prefill_tokens"] += n
            if fin:
                self.prefilling.remove(s)
                self.blocks.register(s.table, block_hashes(s.prompt, self.blocks.block_size))
                self._emit(s, logits[next(out)])
                if not self._done(s):
                    self.decoding.append(s)
        if plain:
            self._decoded(plain, logits[len(keep) - len(plain) :], len(rows))

    def _decode(self, plain: list[Seq]) -> None:
        rows = [(s.table, s.computed, 1) for s in plain]
        with self._screening(plain):
            logits = self._forward(rows, [[s.tokens[-1]] for s in plain], False)[:, -1]  # [B, V]
        self._decoded(plain, logits, len(plain))

    def _decoded(self, plain: list[Seq], logits: torch.Tensor, batch: int) -> None:
        """Pick and send one token per decode row from its logits (``logits`` [len(plain), V]); ``batch``: the
        rows of the forward pass they were in."""
        self.counters["decode_steps"] += 1
        self.counters["decode_rows"] += len(plain)
        toks = logits.argmax(-1).tolist()  # greedy rows; sampled rows draw with their own generator below
        for i, s in enumerate(plain):
            s.computed += 1
            s.rows += batch
            s.steps += 1
            s.stats["target_forward_passes"] += 1
            if s.temperature > 0:
                toks[i] = pick(logits[i], s.temperature, s.top_p, s.generator)
        scored = [i for i, s in enumerate(plain) if s.scores]
        chosen, entropy = [NAN] * len(plain), [NAN] * len(plain)
        if len(scored) == len(plain):
            chosen, entropy = token_logprobs(logits, toks)
        elif scored:
            for i, c, e in zip(scored, *token_logprobs(logits[scored], [toks[i] for i in scored]), strict=True):
                chosen[i], entropy[i] = c, e
        for i, s in enumerate(plain):
            self._deliver(s, [toks[i]], [chosen[i]], [entropy[i]])
            self._done(s)

    def _forward_ragged(
        self, rows: list[tuple[list[int], int, int]], ids: list[list[int]], keep: list[int]
    ) -> torch.Tensor:
        """One packed model pass over rows with different numbers of new tokens; float logits [len(keep), V] at the
        last new token of the rows ``keep``."""
        dev = self.model.device
        view, pos, order, last = ragged_batch(self.pool, rows, dev)
        masks = ragged_masks(self.model.config, *order, self.dtype)  # dense: read only without per-row attention
        x = torch.tensor([[t for row in ids for t in row]], dtype=torch.long, device=dev)
        at = torch.tensor([last[i] for i in keep], dtype=torch.long, device=dev)
        extra = {"ragged": RaggedLayout.of([(done, q) for _, done, q in rows], dev)} if self.per_row_attention else {}
        out = self.model(
            input_ids=x, position_ids=pos, attention_mask=masks, past_key_values=view, use_cache=True,
            logits_to_keep=at, **extra,
        )  # fmt: skip
        return out.logits[0].float()

    def _forward(self, rows: list[tuple[list[int], int, int]], ids: list[list[int]], keep_all: bool) -> torch.Tensor:
        """One model pass over ``rows`` (block table, cached tokens, new tokens); float logits [B, q or 1, V]."""
        view, pos, valid = build_batch(self.pool, rows, self.model.device)
        masks = attention_masks(self.model.config, valid, rows[0][2], self.dtype)
        x = torch.tensor(ids, dtype=torch.long, device=self.model.device)
        out = self.model(
            input_ids=x,
            position_ids=pos,
            attention_mask=masks,
            past_key_values=view,
            use_cache=True,
            logits_to_keep=0 if keep_all else 1,
        )
        return out.logits.float()

    def _screening(self, seqs: list[Seq]) -> contextlib.AbstractContextManager:
        """Screen the head in a pass whose rows (``seqs``, those whose logits it keeps) are all greedy without scores:
        their logits are then exact only where they can be the argmax (``-inf`` elsewhere)."""
        if self.head_screen is None or not seqs or any(s.temperature > 0 or s.scores for s in seqs):
            return contextlib.nullcontext()
        self.counters["screened_passes"] += 1
        return self.head_screen.screening()

    def _emit(self, s: Seq, logits: torch.Tensor) -> None:
        """Pick the next token of ``s`` from its logits [V] and send it."""
        tok = pick(logits, s.temperature, s.top_p, s.generator)
        self._send(s, [tok], logits[None])

    def _send(self, s: Seq, toks: list[int], logits: torch.Tensor) -> None:
        if s.scores:
            self._deliver(s, toks, *token_logprobs(logits, toks))
        else:
            self._deliver(s, toks, [NAN] * len(toks), [NAN] * len(toks))

    def _deliver(self, s: Seq, toks: list[int], chosen: list[float], entropy: list[float]) -> None:
        if s.t_first is None:
            s.t_first = time.perf_counter()
            s.stats["time_to_first_token_s"] = s.t_first - s.t_submit
        s.tokens.extend(toks)
        s.events.put(("chunk", toks, chosen, entropy))

    def _done(self, s: Seq) -> bool:
        """End ``s`` if its last token is a stop id or it reached max_tokens."""
        out = s.out
        if out and out[-1] in s.stop_ids:
            self._end(s, "stop")
            return True
        if len(out) >= s.max_new:
            self._end(s, "length")
            return True
        return False

    def _end(self, s: Seq, reason: str | None, error: Exception | None = None) -> None:
        """Finish ``s``: cache its full blocks, release its KV, send the stats (or the error)."""
        for group in (self.prefilling, self.decoding):
            if s in group:
                group.remove(s)
        if s.table:
            self.blocks.register(s.table, block_hashes(s.tokens[: s.computed], self.blocks.block_size))
            self.blocks.release(s.table)
            s.table = []
        self.counters["finished"] += 1
        self.counters["aborted"] += reason == "abort"
        if error is not None:
            s.events.put(("error", error))
            return
        st = s.stats
        now = time.perf_counter()
        st["new_tokens"] = len(s.out)
        st["finish_reason"] = reason
        st["total_s"] = now - s.t_submit
        st["decode_s"] = now - s.t_first if s.t_first is not None else 0.0
        st["tokens_per_second"] = len(s.out) / st["total_s"] if st["total_s"] > 0 else 0.0
        st["mean_batch_size"] = s.rows / s.steps if s.steps else None
        st["target_step_s"] = st["decode_s"] / s.steps if s.steps else None
        st["batched"] = True
        self._spec_summary(s)
        s.events.put(("done", st))

    # ---- speculation at small batch --------------------------------------------------------------------------------

    def _speculate(self, s: Seq) -> bool:
        """One draft-and-verify step for ``s`` alone; False when nothing was drafted (it then decodes plainly)."""
        kk = min(self.k, s.max_new - len(s.out) - 1)
        if kk < 1:
            return False
        if s.drafter is None:
            s.drafter = self.drafter()
            s.drafter.start(s.prompt)
            s.stats["mode"], s.stats["k"] = s.drafter.mode, self.k
        t0 = time.perf_counter()
        before = s.drafter.forward_passes
        drafts, q = s.drafter.propose(s.tokens, kk, s.temperature, s.top_p, s.generator)
        st = s.stats
        st["draft_forward_passes"] += s.drafter.forward_passes - before
        st["draft_s"] = st.get("draft_s", 0.0) + time.perf_counter() - t0
        if not drafts:
            return False
        feed = [s.tokens[-1], *drafts]
        with self._screening([s]):
            logits = self._forward([(s.table, s.computed, len(feed))], [feed], True)[0]  # [n+1, V]
        if s.temperature <= 0:
            n_acc, nxt = greedy_verify(logits, drafts)
        else:
            p = probs_from_logits(logits, s.temperature, s.top_p)
            n_acc, nxt = rejection_sample(p, q, drafts, s.generator)
        s.drafter.rollback(len(s.tokens) + n_acc)
        s.computed += n_acc + 1
        s.rows += 1
        s.steps += 1
        self.counters["spec_steps"] += 1
        st["target_forward_passes"] += 1
        st["num_spec_steps"] += 1
        st["num_draft_tokens"] += len(drafts)
        st["num_accepted_draft_tokens"] += n_acc
        s.rejections += n_acc < len(drafts)
        hist = st["acceptance_histogram"]
        hist.extend([0] * (len(drafts) - len(hist)))
        for i in range(n_acc):
            hist[i] += 1
        new = drafts[:n_acc] + [nxt]
        for i, t in enumerate(new):
            if t in s.stop_ids:
                new = new[: i + 1]
                break
        self._send(s, new, logits[: len(new)])
        self._done(s)
        return True

    def _spec_summary(self, s: Seq) -> None:
        st = s.stats
        proposed, accepted = st["num_draft_tokens"], st["num_accepted_draft_tokens"]
        st["num_rejected_draft_tokens"] = proposed - accepted
        st["num_rejection_steps"] = s.rejections
        if st["num_spec_steps"]:
            st["mean_acceptance_length"] = 1.0 + accepted / st["num_spec_steps"]
        if proposed:
            st["draft_acceptance_rate"] = accepted / proposed
            st["alpha"] = accepted / (accepted + s.rejections) if accepted + s.rejections else None


def _head_padding(model: torch.nn.Module, max_batch: int) -> HeadPadding | None:
    """The model's head padding (measured once per model object: engines on the same model share it)."""
    if not hasattr(model, "_tokenwise_head_padding"):
        model._tokenwise_head_padding = pad_head_rows(model, max_batch)
    return model._tokenwise_head_padding


