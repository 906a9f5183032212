"""Pretraining recipe: target and draft from scratch sharing a tokenizer, distillation maths, config checks, reruns."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from finetune.config import DataConfig, ModelSpec, PretrainConfig
from finetune.pretrain import cosine_lr, distill_loss, run_pretrain
from finetune.testing import mo_docs, stdlib_docs, train_tokenizer, write_curated

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    docs = stdlib_docs(("json", "textwrap", "heapq", "bisect")) + mo_docs(("de",), limit=100)
    write_curated(root, docs)
    train_tokenizer(root / "tokenizers" / "tiny", [d["text"] for d in docs], vocab_size=500)
    return str(root)


def spec(name: str, hidden: int, layers: int, **kw) -> ModelSpec:
    base = dict(heads=4, intermediate_size=hidden * 2, steps=30, batch_size=8, lr=1e-2, warmup_steps=10)
    return ModelSpec(name=name, hidden_size=hidden, layers=layers, **(base | kw))


def test_target_and_draft_share_tokenizer_and_target_is_better(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = PretrainConfig(
        tokenizer="run:tiny",
        data=DataConfig(seq_len=48, eval_docs=20),
        max_positions=128,
        # tiny runs learn slowly: the wider model needs a lower lr and ~300 steps to pull clearly ahead
        models=[
            spec("target", 64, 2, steps=200, lr=2e-3),
            spec("draft", 8, 1, heads=2, steps=100, distill_from="target", distill_alpha=0.5),
        ],
    )
    out = run_pretrain(cfg, run)
    print({k: round(v["eval_bits_per_byte"], 3) for k, v in out.items()})
    assert out["target"]["eval_bits_per_byte"] < out["draft"]["eval_bits_per_byte"]
    assert out["target"]["params"] > 3 * out["draft"]["params"]
    for name in ("target", "draft"):
        d = f"{run}/models/{name}"
        model = AutoModelForCausalLM.from_pretrained(d)
        assert model.config.model_type == "llama" and model.config.max_position_embeddings == 128
        assert (
            AutoTokenizer.from_pretrained(d).get_vocab()
            == AutoTokenizer.from_pretrained(f"{run}/models/target").get_vocab()
        )
        m = json.loads(open(f"{d}/metrics.json").read())
        assert m["train_curve"][-1]["loss"] < m["train_curve"][0]["loss"]
        assert {"eval_bits_per_byte", "eval_perplexity", "tokens_per_s", "peak_memory_bytes", "params"} <= set(m)
    # a rerun with the same config and inputs is skipped (markers match)
    again = run_pretrain(cfg, run)
    assert again == out
    assert {"code", "docs", "ui"} >= set(m["eval_by_domain"]) and len(m["eval_by_domain"]) >= 2
    # changing only the draft retrains only the draft: the target's marker covers its own inputs, not its siblings'
    stamp = open(f"{run}/models/target/metrics.json").read()
    edited = cfg.model_copy(update={"models": [cfg.models[0], cfg.models[1].model_copy(update={"steps": 5})]})
    third = run_pretrain(edited, run)
    assert open(f"{run}/models/target/metrics.json").read() == stamp and third["target"] == out["target"]
    assert third["draft"] != out["draft"]


def test_distill_loss_limits():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    y = torch.randint(0, 11, (2, 5))
    y[0, 3] = -100
    keep = y[:, 1:] != -100
    ce = torch.nn.functional.cross_entropy(s[:, :-1][keep], y[:, 1:][keep])
    assert distill_loss(s, t, y, alpha=0.0, temperature=1.0) == pytest.approx(ce.item(), rel=1e-6)
    assert distill_loss(s, s, y, alpha=1.0, temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(s, t, y, alpha=1.0, temperature=1.0).item() > 0


def test_schedule_and_config_errors():
    assert cosine_lr(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert cosine_lr(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert cosine_lr(100, 1.0, 10, 100) == pytest.approx(0.1)
    with pytest.raises(ValidationError, match="divisible by heads"):
        spec("x", 30, 1, heads=4)
    with pytest.raises(ValidationError, match="must be listed before it"):
        PretrainConfig(tokenizer="t", models=[spec("draft", 16, 1, distill_from="target"), spec("target", 32, 1)])


def test_per_model_tokenizer_and_distillation_needs_the_same_one():
    from finetune.config import PretrainConfig

    shape = {"hidden_size": 16, "layers": 1, "heads": 2, "intermediate_size": 32}
    cfg = PretrainConfig(
        tokenizer="run:multi", models=[{"name": "t", **shape}, {"name": "ref", "tokenizer": "run:en", **shape}]
    )
    assert [cfg.tokenizer_of(m) for m in cfg.models] == ["run:multi", "run:en"]
    with pytest.raises(ValueError, match="same tokenizer"):
        PretrainConfig(
            tokenizer="run:multi",
            models=[{"name": "t", **shape}, {"name": "d", "tokenizer": "run:en", "distill_from": "t", **shape}],
        )
