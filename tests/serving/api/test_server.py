"""The OpenAI-compatible server on tiny real Llama models: shape, routing, limits, errors, metrics, queueing."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.backend import GenParams, HFBackend, load_backend
from serving.api.config import ServeConfig
from serving.api.server import create_app, serve_in_background

ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


def make_config(models, **kw) -> ServeConfig:
    limits = {"max_tokens": 32, "default_max_tokens": 8, "max_prompt_tokens": 200, "max_body_bytes": 4096}
    limits.update(kw.pop("limits", {}))
    return ServeConfig(
        models=[
            {"name": "large", "path": str(models["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0},
            {"name": "small", "path": str(models["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
        ],
        limits=limits,
        **kw,
    )


@pytest.fixture(scope="module")
def backends(models):
    cfg = make_config(models)
    return {m.name: load_backend(m) for m in cfg.models}


@pytest.fixture(scope="module")
def client(models, backends):
    with TestClient(create_app(make_config(models), backends)) as c:
        yield c


def assert_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    msg = body["error"]["message"]
    assert "Traceback" not in r.text and all(w in msg for w in words), msg
    return body["error"]


def test_completion_shape_usage_metrics_and_headers(client, backends):
    r = client.post("/v1/completions", json={"model": "small", "prompt": "def main():", "max_tokens": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "small"
    ids = backends["small"].encode("def main():")
    expected = [s.token_id for s in backends["small"].generate(ids, GenParams(max_tokens=6))]
    u = body["usage"]
    assert u["prompt_tokens"] == len(ids) and u["completion_tokens"] == len(expected)
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"] == {"cached_tokens": 0}
    eos = backends["small"].eos_ids
    assert body["choices"][0]["text"] == backends["small"].decode([t for t in expected if t not in eos])
    m = body["metrics"]
    assert set(m["timing"]) >= {"time_to_first_token_ms", "mean_itl_ms", "tokens_per_second", "queue_time_ms"}
    assert m["timing"]["time_to_first_token_ms"] > 0 and m["timing"]["tokens_per_second"] > 0
    assert set(m["speculative_decoding"]) >= {"num_draft_tokens", "mean_acceptance_length", "acceptance_histogram"}
    assert m["savings"]["baseline_tokenizer"] == "tiktoken:cl100k_base" and m["savings"]["baseline_model"] == "large"
    cost = (u["prompt_tokens"] * 0.1 + u["completion_tokens"] * 0.2) / 1e6
    assert r.headers["x-tokenwise-model"] == "small"
    assert float(r.headers["x-litellm-response-cost"]) == pytest.approx(cost)
    assert m["cost_usd"] == pytest.approx(cost)


def test_engine_backend_matches_plain_hf_decode(models, backends):
    ref = HFBackend("small", str(models["small"]))
    for prompt in ["import os\n", "class A:\n    def", "x = [1, 2"]:
        ids = ref.encode(prompt)
        params = GenParams(max_tokens=12)
        assert [s.token_id for s in backends["small"].generate(ids, params)] == [
            s.token_id for s in ref.generate(ids, params)
        ]


def test_cascade_router_by_model_name(client):
    msgs = [{"role": "user", "content": "Write a loop"}]
    keep = client.post("/v1/chat/completions", json={"model": "router-cascade--1000", "messages": msgs})
    esc = client.post("/v1/chat/completions", json={"model": "router-cascade-1000", "messages": msgs})
    assert keep.status_code == esc.status_code == 200
    assert keep.json()["model"] == "small" and keep.headers["x-tokenwise-model"] == "small"
    assert esc.json()["model"] == "large" and esc.headers["x-tokenwise-model"] == "large"
    routing = esc.json()["metrics"]["routing"]
    assert routing["router"] == "cascade" and routing["threshold"] == 1000 and routing["escalations"] == 1
    assert routing["candidates"] == ["small", "large"] and routing["score"] < 1000
    assert esc.json()["object"] == "chat.completion" and esc.json()["choices"][0]["message"]["role"] == "assistant"


def test_stop_string_and_echo(client, backends):
    full = client.post("/v1/completions", json={"model": "small", "prompt": "def f(x):", "max_tokens": 16}).json()
    text = full["choices"][0]["text"]
    if len(text) < 3:
        pytest.skip("random tiny model produced too little text to cut")
    stop = text[1:3]
    cut = client.post(
        "/v1/completions", json={"model": "small", "prompt": "def f(x):", "max_tokens": 16, "stop": stop}
    )
    assert cut.json()["choices"][0]["text"] == text[: text.find(stop)]
    assert cut.json()["choices"][0]["finish_reason"] == "stop"
    echo = client.post(
        "/v1/completions", json={"model": "small", "prompt": "def f(x):", "max_tokens": 4, "echo": True}
    )
    assert echo.json()["choices"][0]["text"].startswith("def f(x):")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"model": "small", "prompt": ', 400, ["not valid JSON"]),
        (b'{"model": "small", "prompt": "\xff\xfe"}', 400, ["not valid UTF-8"]),
        (b"[1, 2]", 400, ["JSON object"]),
        (json.dumps({"model": "nope", "prompt": "x"}).encode(), 404, ["nope", "does not exist"]),
        (json.dumps({"model": "router-magic-1", "prompt": "x"}).encode(), 404, ["unknown router"]),
        (json.dumps({"model": "small", "prompt": "x", "max_tokens": -5}).encode(), 400, ["max_tokens"]),
        (json.dumps({"model": "small", "prompt": "x", "max_tokens": "5"}).encode(), 400, ["max_tokens"]),
        (json.dumps({"model": "small", "prompt": "x", "max_tokens": 33}).encode(), 400, ["at most 32"]),
        (json.dumps({"model": "small", "prompt": "x", "temperature": 9}).encode(), 400, ["temperature"]),
        (json.dumps({"model": "small", "prompt": ["a", "b"]}).encode(), 400, ["one prompt"]),
        (json.dumps({"model": "small", "prompt": [1, 99999]}).encode(), 400, ["token ids", "99999"]),
        (json.dumps({"model": "router-learned", "prompt": "x"}).encode(), 404, ["not trained"]),
        (json.dumps({"model": "small", "prompt": "x", "n": 2}).encode(), 400, ["n:"]),
        (json.dumps({"model": "small"}).encode(), 400, ["prompt", "required"]),
        (json.dumps({"model": "small", "prompt": "word " * 300}).encode(), 400, ["prompt is", "limit"]),
        (json.dumps({"model": "small", "prompt": "x" * 5000}).encode(), 413, ["larger than the limit"]),
    ],
    ids=[
        "bad_json",
        "bad_utf8",
        "not_object",
        "unknown_model",
        "unknown_router",
        "negative_max_tokens",
        "string_max_tokens",
        "max_tokens_over_limit",
        "temperature_range",
        "two_prompts",
        "bad_token_ids",
        "untrained_learned_router",
        "n_above_1",
        "missing_prompt",
        "prompt_too_long",
        "body_too_large",
    ],
)
def test_bad_requests_get_clear_4xx(client, body, status, words):
    r = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert_error(r, status, *words)


def test_bad_chat_message_and_unknown_route(client):
    r = client.post("/v1/chat/completions", json={"model": "small", "messages": [{"role": "wizard", "content": "x"}]})
    err = assert_error(r, 400, "messages.0.role")
    assert err["param"] == "messages.0.role"
    assert_error(client.get("/v1/nothing"), 404, "/v1/nothing")


def test_api_keys_from_env(models, backends, monkeypatch):
    monkeypatch.setenv("TW_TEST_KEYS", "k1, k2")
    app = create_app(make_config(models, api_key_env="TW_TEST_KEYS"), backends)
    with TestClient(app) as c:
        body = {"model": "small", "prompt": "x", "max_tokens": 2}
        assert_error(c.post("/v1/completions", json=body), 401, "missing API key")
        assert_error(c.post("/v1/completions", json=body, headers={"Authorization": "Bearer k3"}), 401, "invalid")
        assert c.post("/v1/completions", json=body, headers={"Authorization": "Bearer k2"}).status_code == 200
        assert c.get("/health").status_code == 200
    monkeypatch.delenv("TW_TEST_KEYS")
    with pytest.raises(ValueError, match="TW_TEST_KEYS"):
        create_app(make_config(models, api_key_env="TW_TEST_KEYS"), backends)


def test_metrics_expose_vllm_style_series(client):
    client.post("/v1/completions", json={"model": "small", "prompt": "import", "max_tokens": 3})
    client.post("/v1/completions", json={"model": "router-cascade-1000", "prompt": "import", "max_tokens": 3})
    text = client.get("/metrics").text
    for name in [
        "spec_decode_num_drafts_total",
        "spec_decode_num_draft_tokens_total",
        "spec_decode_num_accepted_tokens_total",
        "prompt_tokens_total",
        "generation_tokens_total",
        "time_to_first_token_seconds_bucket",
        "time_per_output_token_seconds_bucket",
        "e2e_request_latency_seconds_bucket",
        "router_requests_total",
        "router_escalations_total",
        "tokenizer_saved_tokens_total",
        "baseline_tokenizer_tokens_total",
    ]:
        assert f"tokenwise:{name}" in text, name
    assert 'tokenwise:generation_tokens_total{model_name="small"}' in text
    assert 'tokenwise:router_escalations_total{from_model="small",router="cascade",to_model="large"} ' in text


def test_metrics_prefix_switch_to_vllm(models, backends):
    with TestClient(create_app(make_config(models, metrics_prefix="vllm"), backends)) as c:
        c.post("/v1/completions", json={"model": "small", "prompt": "import", "max_tokens": 2})
        text = c.get("/metrics").text
    assert 'vllm:prompt_tokens_total{model_name="small"}' in text and "tokenwise:" not in text


def test_models_and_health(client):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {"small", "large", "auto", "router-cascade"} <= set(ids)
    assert client.get("/health").json()["status"] == "ok"


def test_greedy_outputs_under_concurrency_equal_single(models, backends):
    prompts = ["def a():", "import sys\n", "class B(object):", "for i in range(", "return x +", "# comment\n"]
    with serve_in_background(make_config(models, limits={"max_concurrent": 3, "max_queue": 16}), backends) as srv:

        def ask(p: str, model: str) -> str:
            body = {"model": model, "prompt": p, "max_tokens": 10}
            return httpx.post(srv.url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]

        alone = [ask(p, m) for p in prompts for m in ("small", "large")]
        together: dict[int, str] = {}
        jobs = [(i, p, m) for i, (p, m) in enumerate((p, m) for p in prompts for m in ("small", "large"))]
        threads = [
            threading.Thread(target=lambda i=i, p=p, m=m: together.__setitem__(i, ask(p, m))) for i, p, m in jobs
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [together[i] for i in range(len(jobs))] == alone


def test_queue_full_returns_429_with_retry_after(models, backends):
    cfg = make_config(models, limits={"max_concurrent": 1, "max_queue": 0, "retry_after_s": 3})
    with serve_in_background(cfg, backends) as srv:
        first: dict = {}
        with backends["small"]._lock:  # hold the model mid-request so the only slot stays busy
            t = threading.Thread(
                target=lambda: first.update(
                    r=httpx.post(
                        srv.url + "/v1/completions",
                        json={"model": "small", "prompt": "x", "max_tokens": 2},
                        timeout=60,
                    )
                )
            )
            t.start()
            deadline = time.monotonic() + 20
            while httpx.get(srv.url + "/health").json()["running"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            r = httpx.post(srv.url + "/v1/completions", json={"model": "small", "prompt": "y", "max_tokens": 2})
        t.join()
    err = assert_error(r, 429, "busy")
    assert err["type"] == "rate_limit_error" and r.headers["retry-after"] == "3"
    assert first["r"].status_code == 200


def test_config_rejects_one_model_and_reserved_names(models):
    p = {"price_input_per_1m": 0.1, "price_output_per_1m": 0.2}
    with pytest.raises(ValueError, match="at least two"):
        ServeConfig(models=[{"name": "a", "path": "x", **p}])
    with pytest.raises(ValueError, match="reserved"):
        ServeConfig(models=[{"name": "auto", "path": "x", **p}, {"name": "b", "path": "y", **p}])
    cfg = ServeConfig(models=[{"name": "a", "path": "{run}/models/a", **p}, {"name": "b", "path": "y", **p}])
    cfg = cfg.resolved("/r")
    assert cfg.models[0].path == "/r/models/a"


@pytest.mark.parametrize("method", ["draft", "prompt_lookup"])
def test_speculative_model_serves_target_greedy_output_with_spec_metrics(models, backends, method):
    cfg = make_config(models)
    large = cfg.models[0].model_copy(update={"name": "large-spec"})
    large.speculative = {"method": method, "draft": str(models["small"]), "k": 3}
    cfg = cfg.model_copy(update={"models": [*cfg.models, large]})
    spec_backends = {**backends, "large-spec": load_backend(large)}
    with TestClient(create_app(cfg, spec_backends)) as c:
        for prompt in ["def f(x):\n    return x", "import os\nimport os\nimport"]:
            body = {"prompt": prompt, "max_tokens": 12}
            plain = c.post("/v1/completions", json={"model": "large", **body}).json()
            spec = c.post("/v1/completions", json={"model": "large-spec", **body}).json()
            assert spec["choices"][0]["text"] == plain["choices"][0]["text"]
            sd = spec["metrics"]["speculative_decoding"]
            assert sd["num_spec_steps"] > 0 and sd["num_accepted_draft_tokens"] <= sd["num_draft_tokens"]
            assert spec["metrics"]["forward_passes"] <= plain["metrics"]["forward_passes"]
        text = c.get("/metrics").text
    assert 'tokenwise:spec_decode_num_drafts_total{model_name="large-spec"}' in text
    assert 'tokenwise:spec_decode_num_drafts_total{model_name="large-spec"} 0.0' not in text


def test_client_disconnect_mid_stream_frees_the_slot(models, backends):
    cfg = make_config(models, limits={"max_concurrent": 1, "max_queue": 0})
    with serve_in_background(cfg, backends) as srv:
        body = {"model": "large", "prompt": "def f():", "max_tokens": 32, "stream": True}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        deadline = time.monotonic() + 30
        while httpx.get(srv.url + "/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(srv.url + "/health").json()["running"] == 0
        again = httpx.post(srv.url + "/v1/completions", json={**body, "stream": False, "max_tokens": 2}, timeout=60)
        assert again.status_code == 200


def test_ignore_eos_generates_exactly_max_tokens(client):
    """vLLM's ignore_eos extension: the measurement asks every stack for the same number of tokens."""
    body = {"model": "small", "prompt": "def main():", "max_tokens": 12, "ignore_eos": True}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 12
    bad = client.post("/v1/completions", json={**body, "ignore_eos": "yes"})
    assert bad.status_code == 400


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"tokenwise:{name}{{{want}}} ") or (not labels and line.startswith(f"tokenwise:{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_savings_are_signed_per_unit_and_name_their_quality(models, backends):
    """Savings block = the baseline tokenizer on the exact text; counters split saved/spent, never drop a loss."""
    from serving.api.metrics import QUALITY_WHERE
    from tokenwise.tokenizer_specs import load_tokenizer

    cl100k = load_tokenizer("tiktoken:cl100k_base")
    with TestClient(create_app(make_config(models), backends)) as c:
        before = c.get("/metrics").text
        bodies = []
        for model in ("small", "router-cascade-1000", "router-cascade--1000"):
            r = c.post("/v1/completions", json={"model": model, "prompt": "The quick brown fox", "max_tokens": 8})
            assert r.status_code == 200, r.text
            bodies.append(r.json())
        text = c.get("/metrics").text
    saved_net = 0
    for body in bodies:
        sv, u = body["metrics"]["savings"], body["usage"]
        want = len(cl100k.encode("The quick brown fox")) + len(cl100k.encode(body["choices"][0]["text"]))
        assert sv["baseline_tokens"] == want and sv["billed_tokens"] == u["total_tokens"]
        assert sv["saved_tokens"] == want - u["total_tokens"]  # signed: this tiny tokenizer spends more than cl100k
        assert sv["baseline_model"] == "large" and sv["baseline_cost_usd"] > 0
        assert sv["saved_cost_usd"] == pytest.approx(sv["baseline_cost_usd"] - body["metrics"]["cost_usd"])
        assert sv["quality"]["where"] == QUALITY_WHERE and sv["quality"]["measured_per_request"] is False
        saved_net += sv["saved_tokens"]
    assert saved_net < 0  # a lever that costs tokens shows as spent
    net = sum(
        _metric(text, "tokenizer_saved_tokens_total", model_name=m)
        - _metric(text, "tokenizer_spent_tokens_total", model_name=m)
        - _metric(before, "tokenizer_saved_tokens_total", model_name=m)
        + _metric(before, "tokenizer_spent_tokens_total", model_name=m)
        for m in ("small", "large")
    )
    assert net == pytest.approx(saved_net)
    # routing in USD against the largest model answering the same tokens: the escalation paid for a preview
    esc, kept = bodies[1], bodies[2]
    large_cost = (esc["usage"]["prompt_tokens"] * 1.0 + esc["usage"]["completion_tokens"] * 2.0) / 1e6
    assert _metric(text, "routing_spent_usd_total", router="cascade") == pytest.approx(
        esc["metrics"]["cost_usd"] - large_cost
    )
    kept_large = (kept["usage"]["prompt_tokens"] * 1.0 + kept["usage"]["completion_tokens"] * 2.0) / 1e6
    assert _metric(text, "routing_saved_usd_total", router="cascade") == pytest.approx(
        kept_large - kept["metrics"]["cost_usd"]
    )
    for name in ("tokenizer_saved_tokens", "routing_saved_usd", "speculative_saved_target_passes"):
        help_line = next(x for x in text.splitlines() if x.startswith(f"# HELP tokenwise:{name}"))
        assert "Unit:" in help_line and "Quality:" in help_line


def test_routed_savings_carry_the_calibrated_quality_share(models, backends):
    calibration = {"cascade": {"threshold": -1000.0, "point": {"quality_share": 0.97},
                               "curve": [{"threshold": 1000.0, "quality_share": 1.0}]}}  # fmt: skip
    with TestClient(create_app(make_config(models), backends, calibration=calibration)) as c:
        body = {"prompt": "import os", "max_tokens": 3}
        auto = c.post("/v1/completions", json={"model": "auto", **body}).json()
        esc = c.post("/v1/completions", json={"model": "router-cascade-1000", **body}).json()
        direct = c.post("/v1/completions", json={"model": "small", **body}).json()
        text = c.get("/metrics").text
    assert auto["metrics"]["savings"]["quality"]["router_quality_share"] == 0.97
    assert esc["metrics"]["savings"]["quality"]["router_quality_share"] == 1.0
    assert direct["metrics"]["savings"]["quality"]["router_quality_share"] is None
    assert _metric(text, "router_calibrated_quality_share", router="cascade") == 0.97


def test_threads_sets_the_process_intra_op_threads(models, backends):
    import torch

    before = torch.get_num_threads()
    try:
        create_app(make_config(models, threads=1), backends)
        assert torch.get_num_threads() == 1
        create_app(make_config(models), backends)  # null: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        make_config(models, threads=0)


def test_create_app_frees_the_loading_threads_openmp_pool(models, backends):
    """Requests decode in worker threads; a pool left in the loading thread would put them on libgomp's throttled
    barriers (serving.openmp_pool)."""
    import os

    import torch

    from serving.openmp_pool import _pause_fn, release_openmp_pool

    if _pause_fn() is None:
        pytest.skip("no OpenMP runtime found in this torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        release_openmp_pool()
        t0 = set(os.listdir("/proc/self/task"))
        torch.nn.functional.gelu(torch.randn(2_000_000)).sum()  # the loading thread's parallel work
        workers = set(os.listdir("/proc/self/task")) - t0
        assert workers
        create_app(make_config(models), backends)
        assert not workers & set(os.listdir("/proc/self/task"))
    finally:
        torch.set_num_threads(before)
