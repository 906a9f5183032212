"""The server with continuous batching on tiny real Llama models: same answers as one-at-a-time decoding, cached
prompt tokens in usage and /metrics, the KV budget (400 past it, queue then 429 at it) and aborts on disconnect."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.backend import load_backend
from serving.api.config import ServeConfig
from serving.api.server import create_app, serve_in_background

PROMPTS = ["def a():", "import sys\n", "class B(object):", "for i in range(", "return x +", "# comment\n"]
SYSTEM = "You are a careful assistant. Answer in one short line of Python. " * 4  # a shared head of many blocks


def make_config(models, batching: dict | None = None, max_context: int = 512, **kw) -> ServeConfig:
    batching = {"enabled": True, "kv_budget_tokens": 2048, "block_size": 8, **(batching or {})}
    limits = {"max_tokens": 1000, "default_max_tokens": 8, "max_prompt_tokens": 400, "max_concurrent": 8}
    limits.update(kw.pop("limits", {}))
    return ServeConfig(
        models=[
            {"name": "large", "path": str(models["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0,
             "batching": batching, "max_context": max_context},
            {"name": "small", "path": str(models["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2,
             "batching": batching},
        ],
        limits=limits,
        **kw,
    )  # fmt: skip


def _backends(cfg: ServeConfig) -> dict:
    return {m.name: load_backend(m) for m in cfg.models}


def _close(backends: dict) -> None:
    for b in backends.values():
        b.batch.close()


@pytest.fixture(scope="module")
def plain(tiny_models):
    cfg = make_config(tiny_models, batching={"enabled": False})
    return {m.name: load_backend(m) for m in cfg.models}


@pytest.fixture(scope="module")
def batched(tiny_models):
    backends = _backends(make_config(tiny_models))
    yield backends
    _close(backends)


def _ask(url: str, model: str, prompt: str, max_tokens: int = 10) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
    r = httpx.post(url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_concurrent_batched_answers_equal_one_at_a_time(tiny_models, plain, batched):
    jobs = [(p, m) for p in PROMPTS for m in ("small", "large")]
    with serve_in_background(make_config(tiny_models, batching={"enabled": False}), plain) as srv:
        alone = [_ask(srv.url, m, p)["choices"][0]["text"] for p, m in jobs]
    together: dict[int, dict] = {}
    with serve_in_background(make_config(tiny_models), batched) as srv:
        threads = [
            threading.Thread(target=lambda i=i, p=p, m=m: together.__setitem__(i, _ask(srv.url, m, p)))
            for i, (p, m) in enumerate(jobs)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [together[i]["choices"][0]["text"] for i in range(len(jobs))] == alone
    assert max(batched[m].batch.snapshot()["decode_rows"] / batched[m].batch.snapshot()["decode_steps"]
               for m in ("small", "large")) > 1  # fmt: skip


def test_shared_prefix_is_cached_and_reported_in_usage_and_metrics(tiny_models, batched):
    with TestClient(create_app(make_config(tiny_models), batched)) as c:
        first = c.post("/v1/completions", json={"model": "large", "prompt": SYSTEM + "x = 1", "max_tokens": 4})
        second = c.post("/v1/completions", json={"model": "large", "prompt": SYSTEM + "y = 2", "max_tokens": 4})
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
        body = {"model": "large", "messages": messages, "max_tokens": 4, "stream": True}
        chat = c.post("/v1/chat/completions", json={**body, "stream_options": {"include_usage": True}})
        text = c.get("/metrics").text
    assert first.status_code == 200 and first.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    n_prompt = second.json()["usage"]["prompt_tokens"]
    assert 0 < cached < n_prompt and cached % 8 == 0
    final = [line for line in chat.text.splitlines() if '"usage"' in line and '"prompt_tokens"' in line][-1]
    assert '"prompt_tokens_details":{"cached_tokens":' in final
    hits = float(re.search(r'tokenwise:prefix_cache_hits_total\{model_name="large"\} (\S+)', text).group(1))
    queries = float(re.search(r'tokenwise:prefix_cache_queries_total\{model_name="large"\} (\S+)', text).group(1))
    assert hits >= cached and queries >= 2 * n_prompt
    rate = float(re.search(r'tokenwise:prefix_cache_hit_rate\{model_name="large"\} (\S+)', text).group(1))
    assert 0 < rate < 1
    assert 'tokenwise:kv_cache_usage_perc{model_name="large"} 0.0' in text  # nothing live any more


def test_vllm_names_under_the_compat_switch(tiny_models, batched):
    with TestClient(create_app(make_config(tiny_models, metrics_prefix="vllm"), batched)) as c:
        c.post("/v1/completions", json={"model": "small", "prompt": SYSTEM, "max_tokens": 2})
        text = c.get("/metrics").text
    for name in ("prefix_cache_queries_total", "prefix_cache_hits_total", "kv_cache_usage_perc"):
        assert f'vllm:{name}{{model_name="small"}}' in text, name


def test_request_larger_than_the_kv_budget_gets_400_naming_it(tiny_models):
    cfg = make_config(tiny_models, batching={"kv_budget_tokens": 64})
    backends = _backends(cfg)
    try:
        with TestClient(create_app(cfg, backends)) as c:
            r = c.post("/v1/completions", json={"model": "small", "prompt": "def f(x):", "max_tokens": 60})
            ok = c.post("/v1/completions", json={"model": "small", "prompt": "def f(x):", "max_tokens": 8})
    finally:
        _close(backends)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "kv_budget_exceeded" and "KV budget is 64 tokens" in err["message"]
    assert ok.status_code == 200


def _metric(url: str, model: str = "large") -> dict:
    return httpx.get(url + "/health").json()["batching"][model]


def _wait(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


def test_kv_full_queues_then_429_and_a_disconnect_frees_blocks_at_once(tiny_models):
    """A long stream holds almost the whole KV budget; the next request waits for blocks, the one after gets 429;
    when the stream's client goes away its blocks are freed at the next token and the waiting request runs."""
    cfg = make_config(
        tiny_models, batching={"kv_budget_tokens": 1024, "block_size": 16}, max_context=1024,
        limits={"max_concurrent": 2, "max_queue": 0, "retry_after_s": 2},
    )  # fmt: skip
    backends = _backends(cfg)
    try:
        with serve_in_background(cfg, backends) as srv:
            long = {"model": "large", "prompt": "def f():", "max_tokens": 1000, "ignore_eos": True, "stream": True}
            waiting: dict = {}
            with httpx.stream("POST", srv.url + "/v1/completions", json=long, timeout=60) as r:
                assert r.status_code == 200
                lines = r.iter_lines()  # kept: a dropped line iterator closes the response (a disconnect)
                next(lines)
                assert _metric(srv.url)["kv_blocks_used"] == 63  # ceil((prompt + 1000) / 16) of 64
                t = threading.Thread(target=lambda: waiting.update(r=_ask(srv.url, "large", "import os", 30)))
                t.start()
                _wait(lambda: _metric(srv.url)["waiting"] == 1)  # no blocks for it: it queues
                refused = httpx.post(srv.url + "/v1/completions", json={"model": "large", "prompt": "x"})
            t.join(60)  # the stream's client is gone: its blocks are freed and the queued request runs
            _wait(lambda: _metric(srv.url)["running"] == 0 and _metric(srv.url)["kv_blocks_used"] == 0)
            snap = _metric(srv.url)
    finally:
        _close(backends)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert waiting["r"]["usage"]["completion_tokens"] > 0
    assert snap["aborted"] == 1 and snap["decode_rows"] < 999  # the long request stopped well before 1000 tokens
