"""Continuous batching on tiny float64 models: exact batch-1 outputs, prefix reuse, KV budget, aborts, speculation."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.batch import BatchEngine, KVBudgetExceeded
from serving.decode.engine import Engine
from serving.decode.speculative import DraftModel, PromptLookup

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VOCAB = 64


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_llama(vocab_size=VOCAB, hidden=32, layers=2, seed=3, max_positions=256)


@pytest.fixture(scope="module")
def engine(model) -> Engine:
    return Engine(model)


def _prompts(n: int, seed: int, shared: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    head = [rng.randrange(VOCAB) for _ in range(shared)]
    return [head + [rng.randrange(VOCAB) for _ in range(rng.randint(1, 50))] for _ in range(n)]


def _run_staggered(batch: BatchEngine, requests: list[dict], seed: int) -> list[tuple[list[int], dict]]:
    """Each request from its own thread after a random delay, so requests join and leave a running batch."""
    rng = random.Random(seed)
    delays = [rng.random() * 0.05 for _ in requests]
    out: list = [None] * len(requests)

    def run(i: int) -> None:
        time.sleep(delays[i])
        out[i] = batch.generate(**requests[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_greedy_batched_equals_batch1_over_staggered_arrivals(model, engine) -> None:
    rng = random.Random(7)
    requests = []
    for p in _prompts(24, seed=1, shared=0) + _prompts(8, seed=2, shared=33):
        stop = (rng.randrange(VOCAB),) if rng.random() < 0.3 else ()
        requests.append({"prompt_ids": p, "max_new_tokens": rng.randint(1, 40), "stop_ids": stop})
    # a small budget and prefill chunk: requests wait for blocks, prompts prefill in several chunks
    batch = BatchEngine(model, kv_budget_tokens=512, block_size=8, max_batch=6, prefill_chunk=24)
    got = _run_staggered(batch, requests, seed=3)
    for req, (tokens, stats) in zip(requests, got, strict=True):
        ref, ref_stats = engine.generate(**req)
        assert tokens == ref, req
        assert stats["finish_reason"] == ref_stats["finish_reason"] and stats["new_tokens"] == len(ref)
    snap = batch.snapshot()
    assert snap["decode_rows"] > snap["decode_steps"]  # some steps really ran several requests at once
    assert snap["kv_blocks_used"] == 0 and snap["running"] == 0 and snap["finished"] == len(requests)
    assert snap["prefix_cache_hits"] > 0  # the 8 prompts with a 33-token shared head reused its blocks
    assert snap["mixed_steps"] > 0  # prompt chunks went through the same passes as running requests' decode tokens
    batch.close()


@pytest.mark.parametrize(("per_row", "pack"), [(True, True), (False, True), (True, False)])
def test_prompts_prefill_in_one_pass_and_alongside_decoding(model, engine, per_row, pack) -> None:
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, prefill_chunk=512, per_row_attention=per_row,
                        pack_prefill=pack)  # fmt: skip
    assert batch.per_row_attention == per_row  # True: packed passes attend row by row; False: one dense masked SDPA
    prompts = _prompts(6, seed=12)
    with batch._cv:  # hold the scheduler: all six prompts are admitted together
        streams = [batch.stream(p, max_new_tokens=12) for p in prompts]
    for p, s in zip(prompts, streams, strict=True):
        assert s.run()[0] == engine.generate(p, max_new_tokens=12)[0]
    assert batch.snapshot()["prefill_forwards"] == (1 if pack else 6)  # one packed pass, or one pass per prompt
    long = batch.stream(prompts[0] * 2, max_new_tokens=150)
    it = iter(long)
    next(it)  # decoding now: the next prompt is prefilled in the same pass as one of its decode steps
    late = batch.stream(prompts[1] * 3, max_new_tokens=20)
    assert late.run()[0] == engine.generate(prompts[1] * 3, max_new_tokens=20)[0]
    assert [t for chunk in it for t in chunk] == engine.generate(prompts[0] * 2, max_new_tokens=150)[0][1:]
    snap = batch.snapshot()
    assert (snap["mixed_steps"] >= 1) == pack and snap["kv_blocks_used"] == 0
    batch.close()


def test_each_request_keeps_its_own_sampling_params(model, engine) -> None:
    prompts = _prompts(6, seed=4)
    params = [{"temperature": 0.7 + 0.1 * i, "top_p": 0.8 + 0.03 * i, "seed": 10 + i} for i in range(6)]
    params[2] = {"temperature": 0.0, "top_p": 1.0, "seed": None}
    batch = BatchEngine(model, kv_budget_tokens=1024, block_size=8)
    requests = [{"prompt_ids": p, "max_new_tokens": 20, **kw} for p, kw in zip(prompts, params, strict=True)]
    got = _run_staggered(batch, requests, seed=5)
    for req, (tokens, _) in zip(requests, got, strict=True):
        args = {k: v for k, v in req.items() if k != "prompt_ids"}
        assert tokens == engine.generate(req["prompt_ids"], **args)[0]  # same seed, same logits: same samples
    batch.close()


def test_prefix_cache_reuses_blocks_and_reports_cached_tokens(model, engine) -> None:
    shared = _prompts(1, seed=6)[0] * 3  # a long common head (system prompt / few-shot template)
    batch = BatchEngine(model, kv_budget_tokens=1024, block_size=8)
    first, st1 = batch.generate(shared + [1, 2, 3], max_new_tokens=10)
    second, st2 = batch.generate(shared + [4, 5], max_new_tokens=10)
    assert st1["cached_tokens"] == 0
    assert st2["cached_tokens"] == len(shared) // 8 * 8 > 0  # the full blocks of the common head
    assert second == engine.generate(shared + [4, 5], max_new_tokens=10)[0]
    again, st3 = batch.generate(shared + [1, 2, 3], max_new_tokens=10)  # prompt and generated blocks were cached
    assert again == first and st3["cached_tokens"] == (len(shared) + 3 - 1) // 8 * 8
    snap = batch.snapshot()
    assert snap["prefix_cache_hits"] == st2["cached_tokens"] + st3["cached_tokens"]
    assert snap["prefix_cache_queries"] == 3 * len(shared) + 3 + 2 + 3
    off = BatchEngine(model, kv_budget_tokens=1024, block_size=8, prefix_caching=False)
    assert off.generate(shared + [4, 5], max_new_tokens=10)[1]["cached_tokens"] == 0
    batch.close()
    off.close()


def test_kv_budget_bounds_memory_queues_and_rejects_what_never_fits(model, engine) -> None:
    batch = BatchEngine(model, kv_budget_tokens=96, block_size=16, max_batch=8)
    pool_bytes = batch.snapshot()["kv_pool_bytes"]
    with pytest.raises(KVBudgetExceeded, match="KV budget is 96 tokens"):
        batch.stream(list(range(50)), max_new_tokens=50)
    prompts = _prompts(6, seed=8)
    requests = [{"prompt_ids": (p * 30)[:30], "max_new_tokens": 30} for p in prompts]  # 4 blocks each: 1 at a time
    got = _run_staggered(batch, requests, seed=9)
    for req, (tokens, _) in zip(requests, got, strict=True):
        assert tokens == engine.generate(**req)[0]
    assert max(st["queue_s"] for _, st in got) > 0
    snap = batch.snapshot()
    assert snap["kv_pool_bytes"] == pool_bytes and snap["kv_blocks_used"] == 0
    assert snap["decode_rows"] == snap["decode_steps"]  # never two at once: the budget held one request
    batch.close()


def test_abort_frees_kv_blocks_at_the_next_token(model) -> None:
    batch = BatchEngine(model, kv_budget_tokens=512, block_size=8)
    stream = batch.stream([1, 2, 3], max_new_tokens=200)  # no stop ids: it would run 200 steps
    it = iter(stream)
    next(it)
    assert batch.snapshot()["kv_blocks_used"] == 26  # ceil((3 + 200) / 8) blocks held for it
    stream.abort()
    for _ in it:
        pass
    assert stream.stats["finish_reason"] == "abort" and stream.stats["new_tokens"] < 200
    snap = batch.snapshot()
    assert snap["kv_blocks_used"] == 0 and snap["aborted"] == 1
    batch.close()


@pytest.mark.parametrize("kind", ["prompt_lookup", "draft"])
def test_speculates_alone_and_batches_under_load_with_exact_greedy_output(model, engine, kind) -> None:
    drafter = (lambda: PromptLookup(3)) if kind == "prompt_lookup" else (lambda: DraftModel(model))
    batch = BatchEngine(model, kv_budget_tokens=2048, block_size=8, drafter=drafter, k=3, speculate_max_batch=1)
    repetitive = [5, 6, 7, 8, 9] * 6
    alone, st = batch.generate(repetitive, max_new_tokens=30)
    assert alone == engine.generate(repetitive, max_new_tokens=30)[0]
    assert st["num_spec_steps"] > 0 and st["mode"] == kind.replace("draft", "speculative")
    assert st["target_forward_passes"] < 1 + 30  # fewer target passes than plain decoding
    prompts = [repetitive[i:] for i in range(6)]
    with batch._cv:  # hold the scheduler so all six arrive together: a batch of 6 > speculate_max_batch
        streams = [batch.stream(p, max_new_tokens=30) for p in prompts]
    for p, s in zip(prompts, streams, strict=True):
        tokens, stats = s.run()
        assert tokens == engine.generate(p, max_new_tokens=30)[0]
        assert stats["mean_batch_size"] > 1
    batch.close()


def test_bad_requests_name_the_limit(model) -> None:
    batch = BatchEngine(model, kv_budget_tokens=512)
    with pytest.raises(ValueError, match="context of 256"):
        batch.stream(list(range(250)), max_new_tokens=10)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        batch.stream([])
    with pytest.raises(ValueError, match="temperature"):
        batch.stream([1], temperature=-1)
    batch.close()
    with pytest.raises(RuntimeError, match="closed"):
        batch.stream([1])


def test_idle_scheduler_thread_ends_and_the_next_request_restarts_it(model, engine, monkeypatch) -> None:
    import serving.decode.batch as batch_mod

    monkeypatch.setattr(batch_mod, "IDLE_EXIT_S", 0.05)  # an engine nobody uses any more holds no thread
    batch = BatchEngine(model, kv_budget_tokens=256)
    assert batch.generate([1, 2], max_new_tokens=3)[0] == engine.generate([1, 2], max_new_tokens=3)[0]
    deadline = time.monotonic() + 30
    while batch._thread is not None:
        assert time.monotonic() < deadline, "the idle scheduler thread did not end"
        time.sleep(0.01)
    assert batch.generate([3, 4], max_new_tokens=3)[0] == engine.generate([3, 4], max_new_tokens=3)[0]
    batch.close()


def test_gemma3_sliding_window_and_kept_vocab_wrapper_batch_exactly() -> None:
    """The demo's model family: Gemma 3 (sliding-window + full layers, BOS-scaled embeddings) trimmed to a kept
    vocabulary and wrapped to global ids; a window of 8 tokens, so most requests attend past it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from serving.quantize.compact import to_global
    from tokenwise.vocab import KeptVocab

    torch.manual_seed(5)
    cfg = Gemma3TextConfig(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, max_position_embeddings=256,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )  # fmt: skip
    local = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in local.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    kept = KeptVocab(list(range(0, 96, 2)), 96, 0)  # the even ids of a 96-token vocabulary
    wrapped = to_global(local.to(torch.float64).eval(), kept)
    rng = random.Random(11)
    requests = [{"prompt_ids": [rng.randrange(96) for _ in range(rng.randint(1, 40))],
                 "max_new_tokens": rng.randint(1, 30)} for _ in range(12)]  # fmt: skip
    batch = BatchEngine(wrapped, kv_budget_tokens=1024, block_size=4, max_batch=5, prefill_chunk=16)
    got = _run_staggered(batch, requests, seed=4)
    ref = Engine(wrapped)
    for req, (tokens, _) in zip(requests, got, strict=True):
        assert tokens == ref.generate(**req)[0], req
        assert all(t % 2 == 0 for t in tokens)  # only kept (global) ids come out
    assert batch.snapshot()["decode_rows"] > batch.snapshot()["decode_steps"]
    assert batch.snapshot()["mixed_steps"] > 0  # packed passes with sliding-window masks
    batch.close()


def test_requests_without_scores_skip_them_and_keep_their_tokens(model, engine) -> None:
    """scores=False rows get NaN log-probs/entropies (no vocabulary pass for them); rows beside them keep theirs."""
    prompts = _prompts(4, seed=12)
    batch = BatchEngine(model, kv_budget_tokens=1024, block_size=8)
    streams = [batch.stream(p, max_new_tokens=12, scores=i % 2 == 0) for i, p in enumerate(prompts)]
    for i, (p, s) in enumerate(zip(prompts, streams, strict=True)):
        tokens, _ = s.run()
        ref = engine.stream(p, max_new_tokens=12)
        assert tokens == ref.run()[0]
        if i % 2:
            assert all(math.isnan(v) for v in s.logprobs + s.entropies) and len(s.logprobs) == len(tokens)
        else:
            assert s.logprobs == pytest.approx(ref.logprobs, abs=1e-9)
            assert s.entropies == pytest.approx(ref.entropies, abs=1e-9)
    batch.close()


def test_scheduler_steps_wait_for_the_shared_cpu_forward_lock(model) -> None:
    """The server's CPU models take turns on the cores: no batch step runs while another forward holds the lock."""
    from serving.openmp_pool import ForwardLock

    lock = ForwardLock()
    batch = BatchEngine(model, kv_budget_tokens=512, block_size=8, step_lock=lock)
    with lock:  # another model's forward in progress
        stream = batch.stream([1, 2, 3], max_new_tokens=4)
        time.sleep(0.3)
        assert batch.counters["prefill_forwards"] == 0 and batch.counters["decode_steps"] == 0
    tokens, stats = stream.run()
    assert len(tokens) == 4 and stats["finish_reason"] == "length"
    batch.close()
