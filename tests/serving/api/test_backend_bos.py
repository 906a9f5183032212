"""Backends start every prompt with BOS when the model's tokenizer adds one by default (Gemma: a prompt without
``<bos>`` is far out of distribution); tokenizers that add none keep prompts as they are. One slow test checks the
real Gemma through the serving backend against transformers' own greedy generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune.testing import stdlib_docs, tiny_llama, train_tokenizer
from serving.api.backend import EngineBackend, GenParams
from serving.api.config import ModelSpec
from serving.decode.engine import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model_dir(root: Path, add_bos: bool) -> Path:
    from tokenizers import processors

    tok = train_tokenizer(root / "tok", [d["text"] for d in stdlib_docs(("json", "heapq"))], vocab_size=300)
    if add_bos:
        bos = tok.bos_token
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.bos_token_id)]
        )
    out = root / "model"
    tiny_llama(out, tok, hidden=32, layers=1, seed=5)
    return out


@pytest.mark.parametrize("add_bos", [True, False])
def test_prompts_start_with_bos_exactly_when_the_tokenizer_adds_it(tmp_path, add_bos):
    d = _model_dir(tmp_path, add_bos)
    b = EngineBackend(ModelSpec(name="m", path=str(d)))
    ids = b.encode("import json")
    bos = b.tok.bos_token_id
    assert bos not in ids and b.prefix == ([bos] if add_bos else [])
    want, _ = Engine(b.model).generate(b.prefix + ids, max_new_tokens=6)
    got = [s.token_id for s in b.generate(ids, GenParams(max_tokens=6))]
    assert got == want
    assert [s.token_id for s in b.generate(b.prefix + ids, GenParams(max_tokens=6))] == want  # no double BOS
    with torch.inference_mode():
        full = torch.log_softmax(b.model(input_ids=torch.tensor([b.prefix + ids])).logits[0].float(), -1)
    expect = sum(float(full[i - 1, t]) for i, t in enumerate(b.prefix + ids) if i >= len(b.prefix) + 2)
    assert b.logprob_sum(ids[:2], ids[2:]) == pytest.approx(expect, abs=1e-4)


@pytest.mark.slow
def test_gemma_served_greedy_equals_transformers_generate(gemma_dir):
    """The real model through the serving backend: BOS added, greedy tokens equal to transformers' generate."""
    b = EngineBackend(ModelSpec(name="gemma", path=str(gemma_dir)))
    assert b.prefix == [2] and b.model.config.model_type == "gemma3_text"
    ids = b.encode("The capital of France is")
    got = [s.token_id for s in b.generate(ids, GenParams(max_tokens=8))]
    with torch.inference_mode():
        ref = b.model.generate(torch.tensor([[2, *ids]]), max_new_tokens=8, do_sample=False)[0, len(ids) + 1 :]
    assert got == ref.tolist()
    assert b.decode(got).strip()  # a real continuation, not an empty or special-token answer
