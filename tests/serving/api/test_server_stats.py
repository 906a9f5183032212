"""Per-request stats of requests that end at EOS or a stop string, through the real HTTP server (the stats race of
issue 19: the response was built before the generation's stats were copied, so EOS-ended requests reported
``forward_passes: 0``); and the savings block with its signed figures and where its quality figure is."""

from __future__ import annotations

import json

import httpx
import pytest

from serving.api.backend import GenParams, load_backend
from serving.api.config import ModelSpec, ServeConfig
from serving.api.server import serve_in_background

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
EOS_AT = 6  # the request's 7th token is made the model's EOS token

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _set_eos(model_dir, eos_id: int) -> None:
    for name in ("config.json", "generation_config.json"):
        p = model_dir / name
        if p.exists():
            cfg = json.loads(p.read_text())
            cfg["eos_token_id"] = eos_id
            p.write_text(json.dumps(cfg))


def _wide_pair(tokenizer_dir, root):
    """A random-init Llama with a wide init (varied greedy text, unlike the default init's one repeated token) and a
    close drafter (the same weights plus noise), saved with the tiny tokenizer as HF dirs."""
    import copy

    import torch
    from transformers import AutoTokenizer

    from serving.api.fixtures import tiny_llama

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    target = tiny_llama(vocab_size=len(tok), hidden=32, layers=2, seed=0, dtype=torch.float32)
    draft = copy.deepcopy(target)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    for name, model in (("large", target), ("small", draft)):
        model.config.eos_token_id = tok.eos_token_id
        model.save_pretrained(str(root / name))
        tok.save_pretrained(str(root / name))
    return root / "large", root / "small"


@pytest.fixture(scope="module")
def eos_models(tiny_models, tmp_path_factory):
    """A pair whose EOS id is the token the large model writes at position EOS_AT (or the first new token after it)
    for PROMPT, so a greedy request for PROMPT ends at EOS; the small model is its drafter."""
    large, small = _wide_pair(tiny_models["tokenizer"], tmp_path_factory.mktemp("eos-models"))
    b = load_backend(ModelSpec(name="large", path=str(large)))
    ids = b.encode(PROMPT)
    toks = [s.token_id for s in b.generate(ids, GenParams(max_tokens=24, ignore_eos=True))]
    at = next(i for i in range(EOS_AT, len(toks)) if toks[i] not in toks[:i])
    _set_eos(large, toks[at])
    _set_eos(small, toks[at])
    return {"large": large, "small": small, "eos_at": at, "prompt_ids": ids}


def _config(m) -> ServeConfig:
    spec = {"method": "draft", "draft": str(m["small"]), "k": 3, "auto_off": False}
    return ServeConfig(
        models=[
            {"name": "target", "path": str(m["large"]), "price_input_per_1m": 1.0, "price_output_per_1m": 2.0},
            {"name": "small", "path": str(m["small"]), "price_input_per_1m": 0.1, "price_output_per_1m": 0.2},
            {"name": "target-spec", "path": str(m["large"]), "price_input_per_1m": 1.0,
             "price_output_per_1m": 2.0, "speculative": spec},
        ],  # fmt: skip
        limits={"max_tokens": 32, "default_max_tokens": 16},
    )


@pytest.fixture(scope="module")
def server(eos_models):
    cfg = _config(eos_models)
    backends = {m.name: load_backend(m) for m in cfg.models}
    with serve_in_background(cfg, backends) as srv:
        yield srv, backends


def _offline(backends, name: str, prompt_ids: list[int]) -> dict:
    b = backends[name]
    _, stats = b.engine.generate(prompt_ids, max_new_tokens=16, mode=b.mode, k=3, stop_ids=tuple(b.eos_ids))
    return stats


@pytest.mark.parametrize("model", ["target", "target-spec"])
@pytest.mark.parametrize("stream", [False, True])
def test_request_ending_at_eos_reports_its_forward_passes(server, eos_models, model, stream):
    srv, backends = server
    want = _offline(backends, model, eos_models["prompt_ids"])
    assert want["finish_reason"] == "stop" and want["new_tokens"] == eos_models["eos_at"] + 1
    body = {"model": model, "prompt": PROMPT, "max_tokens": 16}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    for _ in range(6):  # the race lost most of the time; six in a row would all have to win
        r = httpx.post(srv.url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        if stream:
            chunks = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
            finish = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]][-1]
            res = next(c for c in chunks if c.get("usage"))
        else:
            res = r.json()
            finish = res["choices"][0]["finish_reason"]
        m = res["metrics"]
        assert finish == "stop" and res["usage"]["completion_tokens"] == eos_models["eos_at"] + 1
        assert m["forward_passes"] == want["target_forward_passes"] > 0
        sd = m["speculative_decoding"]
        if model == "target-spec":
            assert sd["num_spec_steps"] == want["num_spec_steps"] > 0
            assert sd["num_draft_tokens"] == want["num_draft_tokens"]
            assert sd["num_accepted_draft_tokens"] == want["num_accepted_draft_tokens"]
        else:
            assert sd["num_spec_steps"] == 0 and m["forward_passes"] == eos_models["eos_at"] + 1


def test_stop_string_request_reports_the_passes_it_ran(server, eos_models):
    srv, backends = server
    full = httpx.post(srv.url + "/v1/completions", json={"model": "target", "prompt": PROMPT, "max_tokens": 16,
                                                        "ignore_eos": True}, timeout=60).json()  # fmt: skip
    text = full["choices"][0]["text"]
    stop = next((text[i : i + 2] for i in range(2, len(text) - 2) if text[i : i + 2].strip()), None)
    if stop is None or text.find(stop) < 2:
        pytest.skip("random tiny model produced no usable stop string")
    r = httpx.post(srv.url + "/v1/completions", json={"model": "target", "prompt": PROMPT, "max_tokens": 16,
                                                     "ignore_eos": True, "stop": stop}, timeout=60).json()  # fmt: skip
    assert r["choices"][0]["finish_reason"] == "stop"
    assert 0 < r["metrics"]["forward_passes"] <= 16
