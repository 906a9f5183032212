"""LoRA recipe on tiny seeded models: only adapter weights move, merged == unmerged, loss falls, resume is exact,
bad input fails before training, NaN keeps the last good checkpoint, Llama and GPT-2 bases both work."""

from __future__ import annotations

import json
import math

import pytest
import torch

from finetune.base import BaseModelError
from finetune.config import DataConfig, LoraConfig
from finetune.data import DataError, finite_texts
from finetune.lora import LoraRecipe, TrainingDiverged
from finetune.testing import stdlib_docs, tiny_gpt2, tiny_llama, train_tokenizer, write_curated

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.",
    "for i in range(10):\n    print(i * i)\n",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    docs = stdlib_docs(("json", "textwrap", "heapq"))
    tok = train_tokenizer(root / "tok", [d["text"] for d in docs], vocab_size=600)
    write_curated(root / "run", docs)
    tiny_llama(root / "llama", tok)
    tiny_gpt2(root / "gpt2", tok)
    return {
        "root": root,
        "tok": tok,
        "run": str(root / "run"),
        "llama": str(root / "llama"),
        "gpt2": str(root / "gpt2"),
    }


def cfg(base: str, **kw) -> LoraConfig:
    defaults = dict(
        base=base,
        data=DataConfig(seq_len=32, eval_docs=8),
        rank=4,
        alpha=8,
        dropout=0.1,
        steps=4,
        batch_size=2,
        lr=5e-3,
        warmup_steps=1,
        eval_every=100,
        checkpoint_every=100,
        seed=0,
        resume=True,
    )
    defaults.update(kw)
    return LoraConfig(**defaults)


def recipe(fx, tmp_path, name="out", texts=TEXTS, **kw) -> LoraRecipe:
    c = cfg(kw.pop("base", fx["llama"]), **kw)
    return LoraRecipe(c, out_dir=str(tmp_path / name)).setup(finite_texts(texts), TEXTS)


def test_only_adapter_params_change_after_a_step(fx, tmp_path):
    r = recipe(fx, tmp_path)
    before = {n: p.detach().clone() for n, p in r.model.named_parameters()}
    r.train(max_steps=2)  # the warmup schedule starts at lr 0
    changed = {n for n, p in r.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert {n for n, p in r.model.named_parameters() if p.requires_grad} >= changed
    assert any("lora_B" in n for n in changed)


def test_merged_and_unmerged_outputs_agree(fx, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    r = recipe(fx, tmp_path, merge=True, steps=3, dropout=0.0)
    r.train()
    r.save()
    x = torch.tensor([fx["tok"]("def f(x): return x")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(fx["llama"])
    peft = PeftModel.from_pretrained(base, str(tmp_path / "out" / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out" / "merged")).eval()
    with torch.no_grad():
        a, b = peft(x).logits, merged(x).logits
        plain = AutoModelForCausalLM.from_pretrained(fx["llama"])(x).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-4)  # the adapter did something


def test_loss_falls_on_repeating_corpus(fx, tmp_path):
    r = recipe(fx, tmp_path, steps=40, lr=2e-2, warmup_steps=2, dropout=0.0, target_modules="all-linear")
    m = r.train()
    first, last = m["train_curve"][0]["loss"], sum(x["loss"] for x in m["train_curve"][-5:]) / 5
    assert last < 0.7 * first


def test_resume_gives_same_loss_as_uninterrupted(fx, tmp_path):
    kw = dict(steps=6, grad_accum=2, checkpoint_every=3, dropout=0.2)
    full = recipe(fx, tmp_path, "a", **kw).train()
    part = recipe(fx, tmp_path, "b", **kw)
    part.train(max_steps=3)
    assert part.latest_checkpoint().endswith("step-0000003")
    resumed = recipe(fx, tmp_path, "b", **kw)  # a fresh process would do exactly this
    assert resumed.step == 3
    out = resumed.train()
    assert [x["loss"] for x in out["train_curve"]] == pytest.approx([x["loss"] for x in full["train_curve"]], abs=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(fx, tmp_path):
    r = recipe(fx, tmp_path, steps=6, checkpoint_every=2)
    r.train(max_steps=2)
    with torch.no_grad():
        next(p for n, p in r.model.named_parameters() if "lora_A" in n).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step-0000002"):
        r.train()
    assert r.latest_checkpoint().endswith("step-0000002")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["status"] == "diverged"


def test_gpt2_base_and_curated_data(fx, tmp_path):
    c = cfg(fx["gpt2"], target_modules=["c_attn"], steps=2, eval_every=1, eval_batches=1)
    r = LoraRecipe(c, run_dir=fx["run"], out_dir=str(tmp_path / "g")).setup()
    r.train()
    m = r.save()
    assert m["trainable_share"] < 0.2 and m["eval_bits_per_byte"] > 0 and len(m["eval_curve"]) == 3
    assert (tmp_path / "g" / "adapter" / "adapter_model.safetensors").is_file()
    # before/after are on the same full eval set (the curve's quick evals use a prefix of it)
    from finetune.base import load_causal_lm
    from finetune.metrics import evaluate_texts

    base = evaluate_texts(load_causal_lm(fx["gpt2"], torch.float32), r.tok, r.evals, c.data.seq_len, c.batch_size)
    assert m["eval"]["docs"] == base.docs == len(r.evals) > c.eval_batches * c.batch_size
    assert m["bits_per_byte_before"] == pytest.approx(base.bits_per_byte, rel=1e-6)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(base="/nonexistent/model"), BaseModelError, "not found"),
        (dict(data=DataConfig(seq_len=4096)), BaseModelError, "exceeds the model's maximum"),
        (dict(target_modules=["nope_proj"]), BaseModelError, "linear modules are"),
    ],
)
def test_bad_input_fails_before_training(fx, tmp_path, change, error, match):
    base = change.pop("base", fx["llama"])
    with pytest.raises(error, match=match):
        LoraRecipe(cfg(base, **change), out_dir=str(tmp_path / "x")).setup(finite_texts(TEXTS), TEXTS)


def test_rank_and_vocab_and_empty_data_errors(fx, tmp_path):
    with pytest.raises(ValueError, match="rank must be >= 1"):
        cfg(fx["llama"], rank=0)
    small = tmp_path / "small"
    tiny_llama(small, fx["tok"])
    cfg_json = json.loads((small / "config.json").read_text())
    cfg_json["vocab_size"] = 100
    (small / "config.json").write_text(json.dumps(cfg_json))
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg_json.items() if k != "architectures"})).save_pretrained(small)
    with pytest.raises(BaseModelError, match="tokenizer has 600 tokens but the model embeds only 100"):
        LoraRecipe(cfg(str(small)), out_dir=str(tmp_path / "v")).setup(finite_texts(TEXTS), TEXTS)
    with pytest.raises(DataError, match="empty training set"):
        LoraRecipe(cfg(fx["llama"]), out_dir=str(tmp_path / "e")).setup(finite_texts([]), TEXTS)
    c = cfg(fx["llama"], data=DataConfig(seq_len=32, domains=["nope"]))
    with pytest.raises(DataError, match="no held-out documents|empty training set"):
        LoraRecipe(c, run_dir=fx["run"], out_dir=str(tmp_path / "d")).setup()
    notlm = tmp_path / "notlm"
    notlm.mkdir()
    (notlm / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(BaseModelError, match="not a causal LM"):
        LoraRecipe(cfg(str(notlm)), out_dir=str(tmp_path / "n")).setup(finite_texts(TEXTS), TEXTS)


def test_cpu_runtime_is_fp32_without_checkpointing():
    from tokenwise.device import pick_runtime

    rt = pick_runtime("cpu")
    assert rt.device.type == "cpu" and rt.dtype == torch.float32 and not rt.gradient_checkpointing
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="use device: auto or cpu"):
            pick_runtime("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_with_gradient_checkpointing(fx, tmp_path):
    r = recipe(fx, tmp_path, device="cuda")
    m = r.train(max_steps=3)
    assert r.rt.dtype == torch.bfloat16 and r.rt.gradient_checkpointing
    assert m["peak_memory_kind"] == "cuda_max_allocated" and all(math.isfinite(x["loss"]) for x in m["train_curve"])
