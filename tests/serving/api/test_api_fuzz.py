"""Property tests (hypothesis) against a real server on 127.0.0.1: every bad request is a 4xx JSON error.

The server runs tiny random-init Llamas behind an API key (from the environment). Malformed JSON, wrong types,
huge ``max_tokens``, negative temperatures, unknown models, oversize prompts, invalid UTF-8 bodies and missing or
wrong keys each get a 4xx with an OpenAI-shaped ``{"error": {"message": ...}}`` body, never a 500 or a stack trace,
and the server keeps answering valid requests afterwards. Examples are bounded and derandomized.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.api.config import ServeConfig
from serving.api.server import serve_in_background

KEY = "fuzz-key-0123456789"
MODELS = ("small", "large")
LIMITS = {"max_tokens": 8, "default_max_tokens": 4, "max_prompt_tokens": 64, "max_body_bytes": 8192, "max_queue": 64}
FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    models = tiny_models
    cfg = ServeConfig(
        models=[
            {"name": "large", "path": str(models["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0},
            {"name": "small", "path": str(models["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
        ],
        limits=LIMITS,
        api_key_env="TOKENWISE_FUZZ_KEYS",
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("TOKENWISE_FUZZ_KEYS", KEY)
    srv = serve_in_background(cfg)
    mp.undo()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client
    srv.stop()


def assert_4xx(r: httpx.Response) -> dict:
    """A client error in OpenAI's shape: 4xx, JSON, a non-empty message, no traceback."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert "Traceback" not in r.text and 'File "' not in r.text
    return err


def assert_alive(client: httpx.Client) -> None:
    r = client.post("/v1/completions", json={"model": "small", "prompt": "x = 1", "max_tokens": 2}, headers=AUTH)
    assert r.status_code == 200 and r.json()["choices"][0]["text"] is not None, r.text


def post(client: httpx.Client, body: bytes, path: str = "/v1/completions", headers: dict | None = None):
    return client.post(path, content=body, headers={"Content-Type": "application/json", **AUTH, **(headers or {})})


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode), chat=st.booleans())
def test_malformed_json_bodies(server, raw, chat):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    if _is_json_object(raw):
        raw = raw[:-1]  # make it malformed
    assert_4xx(post(server, raw, path))


@FUZZ
@given(
    bad=st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)),
    where=st.sampled_from(["prompt", "model", "key"]),
)
def test_invalid_utf8_in_bodies(server, bad, where):
    fields = {"model": b"small", "prompt": b"def f(", "key": b"ok"}
    fields[where] = fields[where] + bad
    body = b'{"model": "%s", "prompt": "%s", "%s": 1}' % (fields["model"], fields["prompt"], fields["key"])
    err = assert_4xx(post(server, body))
    assert err["code"] == "invalid_encoding" and "UTF-8" in err["message"]


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


WRONG = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
    | st.lists(st.integers(-5, 5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)
FIELD_TYPES = {  # a strategy for values that are NOT valid for the field
    "model": WRONG.filter(lambda v: not (isinstance(v, str) and v)),
    "prompt": WRONG.filter(lambda v: not isinstance(v, str) and not (isinstance(v, list) and v)),
    "max_tokens": WRONG.filter(
        lambda v: v is not None and not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8)
    ),
    "temperature": WRONG.filter(lambda v: not (type(v) in (int, float) and 0 <= v <= 2)),
    "top_p": WRONG.filter(lambda v: not (type(v) in (int, float) and 0 < v <= 1)),
    "stream": WRONG.filter(lambda v: not isinstance(v, bool)),
    "stop": WRONG.filter(lambda v: v is not None and not isinstance(v, str)),
    "seed": WRONG.filter(lambda v: v is not None and not (isinstance(v, int) and not isinstance(v, bool))),
    "n": WRONG.filter(lambda v: v != 1),
}


@FUZZ
@given(data=st.data(), field=st.sampled_from(sorted(FIELD_TYPES)))
def test_wrong_types_and_out_of_range_values(server, data, field):
    value = data.draw(FIELD_TYPES[field], label=field)
    body = {"model": "small", "prompt": "def f(", "max_tokens": 2, field: value}
    err = assert_4xx(post(server, json.dumps(body).encode()))
    assert err["code"] in {"invalid_type", "invalid_value", "model_not_found", "missing_required_parameter", None}


@FUZZ
@given(max_tokens=st.integers(min_value=LIMITS["max_tokens"] + 1, max_value=2**63), chat=st.booleans())
def test_huge_max_tokens(server, max_tokens, chat):
    body = {"model": "large", "max_tokens": max_tokens}
    body |= {"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"}
    err = assert_4xx(post(server, json.dumps(body).encode(), "/v1/chat/completions" if chat else "/v1/completions"))
    assert err["param"] in ("max_tokens", None)


@FUZZ
@given(temperature=st.floats(max_value=-1e-12, allow_nan=False) | st.floats(min_value=2.0001, allow_nan=False))
def test_out_of_range_temperature(server, temperature):
    body = {"model": "small", "prompt": "x", "max_tokens": 2, "temperature": temperature}
    assert "temperature" in assert_4xx(post(server, json.dumps(body).encode()))["message"]


@FUZZ
@given(model=st.text(min_size=1, max_size=40).filter(lambda m: m not in (*MODELS, "auto")))
def test_unknown_model(server, model):
    body = {"model": model, "prompt": "x", "max_tokens": 2}
    err = assert_4xx(post(server, json.dumps(body).encode()))
    assert err["code"] in ("model_not_found", "invalid_value")


@FUZZ
@given(n=st.integers(min_value=300, max_value=20_000), ids=st.booleans())
def test_oversize_prompts(server, n, ids):
    prompt = [5] * n if ids else "word " * n
    r = post(server, json.dumps({"model": "small", "prompt": prompt, "max_tokens": 2}).encode())
    err = assert_4xx(r)
    assert r.status_code in (400, 413) and ("prompt" in err["message"] or "body" in err["message"])


@FUZZ
@given(
    header=st.none()
    | st.text(max_size=40).filter(lambda s: s.isascii() and s.isprintable() and s == s.strip())
    | st.text(min_size=1, max_size=30)
    .filter(lambda s: s.isascii() and s.isprintable() and s == s.strip())
    .map(lambda k: f"Bearer {k}")
)
def test_missing_or_invalid_api_key(server, header):
    headers = {"Content-Type": "application/json"} | ({"Authorization": header} if header is not None else {})
    if header is not None and header.strip() == f"Bearer {KEY}":
        return
    r = server.post("/v1/completions", content=b'{"model": "small", "prompt": "x"}', headers=headers)
    err = assert_4xx(r)
    assert r.status_code == 401 and err["code"] in ("missing_api_key", "invalid_api_key") and KEY not in r.text


def test_server_still_serves_after_the_fuzzing(server):
    assert_alive(server)
    assert server.get("/health").status_code == 200
