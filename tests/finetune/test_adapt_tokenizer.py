"""New-tokenizer adaptation: new rows start as the mean of their old pieces, only adapters and new rows train,
tokens saved and bits per byte before/after are reported."""

from __future__ import annotations

import pytest
import torch

from finetune.adapt_tokenizer import adapt, init_new_model, token_mapping
from finetune.config import AdaptConfig, DataConfig
from finetune.data import finite_texts
from finetune.testing import stdlib_docs, tiny_llama, train_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    texts = [d["text"] for d in stdlib_docs(("textwrap", "heapq"))]
    old = train_tokenizer(root / "old", texts, vocab_size=400)
    new = train_tokenizer(root / "new", texts, vocab_size=700)  # a bigger BPE: shares the first merges, adds more
    ext = train_tokenizer(root / "ext", texts, vocab_size=400)
    ext.add_tokens(["paragraph", "heapq"])  # an extension: every old id kept, two added tokens
    ext.save_pretrained(root / "ext")
    tiny_llama(root / "model", old, tie_word_embeddings=False)
    return {"root": root, "texts": texts, "old": old, "new": new, "ext": ext, "model": str(root / "model")}


@pytest.mark.parametrize("which", ["new", "ext"])
def test_new_token_init_is_mean_of_old_pieces(fx, which):
    old, new = fx["old"], fx[which]
    model, new_ids = init_new_model(fx["model"], old, new)
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(fx["model"])
    e_old, e_new = ref.get_input_embeddings().weight, model.get_input_embeddings().weight
    h_old, h_new = ref.lm_head.weight, model.lm_head.weight
    assert new_ids and e_new.shape[0] == len(new)
    for nid in new_ids[:50]:
        pieces = old(new.decode([nid]), add_special_tokens=False)["input_ids"]
        assert torch.allclose(e_new[nid], e_old[pieces].mean(0), atol=1e-6), new.convert_ids_to_tokens(nid)
        assert torch.allclose(h_new[nid], h_old[pieces].mean(0), atol=1e-6)
    copy, _ = token_mapping(old, new)
    some = list(copy.items())[:50]
    assert all(torch.equal(e_new[n], e_old[o]) for n, o in some)
    if which == "ext":
        assert new_ids == [len(old), len(old) + 1] and all(n == o for n, o in copy.items())


def test_adapt_trains_only_adapters_and_new_rows_and_reports(fx, tmp_path):
    cfg = AdaptConfig(
        base=fx["model"],
        new_tokenizer=str(fx["root"] / "ext"),
        data=DataConfig(seq_len=32),
        rank=4,
        alpha=8,
        steps=4,
        batch_size=2,
        lr=2e-2,
        warmup_steps=1,
        eval_every=100,
        checkpoint_every=100,
        merge=True,
    )
    evals = [t for t in fx["texts"] if "paragraph" in t or "heapq" in t][:6]
    m = adapt(cfg, None, str(tmp_path / "out"), finite_texts(evals), evals)
    t = m["eval_tokens"]
    assert t["new_tokens"] < t["old_tokens"] and t["tokens_saved"] == t["old_tokens"] - t["new_tokens"]
    assert m["bits_per_byte_old_model"] > 0 and m["bits_per_byte_init"] > 0 and m["eval_bits_per_byte"] > 0
    from transformers import AutoModelForCausalLM

    init = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out" / "init"))
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out" / "merged"))
    e0, e1 = init.get_input_embeddings().weight, merged.get_input_embeddings().weight
    moved = {i for i in range(e0.shape[0]) if not torch.equal(e0[i], e1[i])}
    assert moved and moved <= {400, 401}  # only declared new rows move (input rows only when seen in training)
    h0, h1 = init.lm_head.weight, merged.lm_head.weight
    assert {i for i in range(h0.shape[0]) if not torch.equal(h0[i], h1[i])} == {400, 401}
