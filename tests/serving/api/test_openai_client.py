"""The official openai client against a real uvicorn server on 127.0.0.1: completions, chat, streaming, errors."""

from __future__ import annotations

import openai
import pytest

from serving.api.backend import load_backend
from serving.api.config import ServeConfig
from serving.api.server import serve_in_background


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    models = tiny_models
    cfg = ServeConfig(
        models=[
            {"name": "small", "path": str(models["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
            {"name": "large", "path": str(models["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0},
        ],
        limits={"max_tokens": 32, "default_max_tokens": 8},
    )
    backends = {m.name: load_backend(m) for m in cfg.models}
    with serve_in_background(cfg, backends) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_completion(client):
    r = client.completions.create(model="small", prompt="def main():", max_tokens=5, temperature=0)
    assert r.model == "small" and r.object == "text_completion" and len(r.choices) == 1
    assert r.usage.completion_tokens <= 5 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.model_extra["metrics"]["timing"]["tokens_per_second"] > 0


def test_chat_completion_and_raw_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="router-cascade-1000", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
    )
    r = raw.parse()
    assert r.model == "large" and raw.headers["x-tokenwise-model"] == "large"
    assert float(raw.headers["x-litellm-response-cost"]) > 0
    assert r.choices[0].message.role == "assistant" and isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.model_extra["metrics"]["routing"]["escalations"] == 1


def test_chat_streaming_with_usage_matches_non_streaming(client):
    msgs = [{"role": "user", "content": "count: 1, 2,"}]
    whole = client.chat.completions.create(model="small", messages=msgs, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(
        model="small", messages=msgs, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.model_extra["metrics"]["timing"]["time_to_first_token_ms"] > 0


def test_completion_streaming(client):
    whole = client.completions.create(model="large", prompt="import", max_tokens=6, temperature=0)
    stream = client.completions.create(
        model="large",
        prompt="import",
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_models_list(client):
    assert {"small", "large", "auto"} <= {m.id for m in client.models.list().data}


def test_client_errors_are_typed_with_messages(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-9", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="small", prompt="x", max_tokens=-1)
    with pytest.raises(openai.BadRequestError, match="at most 32"):
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}], max_tokens=500)
