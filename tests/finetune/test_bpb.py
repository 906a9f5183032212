"""Bits per byte: the reported number equals one computed by hand on a toy model; windows and padding are exact."""

from __future__ import annotations

import math

import pytest
import torch

from finetune.metrics import bits_per_byte, doc_windows, evaluate_texts, perplexity
from finetune.testing import tiny_llama, train_tokenizer

TEXTS = ["def f(x):\n    return x * 2\n", "Grüße aus Köln — naïve café", "short"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bpb")
    tok = train_tokenizer(root / "tok", TEXTS * 20, vocab_size=300)
    model = tiny_llama(root / "m", tok, hidden=32, layers=1).eval()
    return tok, model


def hand_nll(model, tok, text: str) -> tuple[float, int]:
    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    nll = -sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1))
    return nll, len(ids) - 1


def test_bpb_equals_hand_computation(toy):
    tok, model = toy
    res = evaluate_texts(model, tok, TEXTS, seq_len=128, batch_size=2)  # batch of 2 pads the shorter doc
    nll, n = map(sum, zip(*(hand_nll(model, tok, t) for t in TEXTS), strict=True))
    n_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
    assert res.bytes == n_bytes and res.tokens == n and res.docs == 3
    assert res.bits_per_byte == pytest.approx(nll / (math.log(2) * n_bytes), rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_uniform_model_costs_log2_vocab_per_token(toy):
    tok, model = toy
    import copy

    uniform = copy.deepcopy(model)
    with torch.no_grad():
        uniform.lm_head.weight.zero_()  # every logit 0: each token costs ln V nats
    res = evaluate_texts(uniform, tok, TEXTS, seq_len=128)
    v = uniform.config.vocab_size
    assert res.bits_per_byte == pytest.approx(res.tokens * math.log2(v) / res.bytes, rel=1e-6)


def test_windows_cover_every_token_once():
    ids = list(range(10, 21))  # 11 tokens
    wins = doc_windows(ids, start=1, seq_len=4)
    assert [y for _, w in wins for y in w] == ids
    assert all(len(x) == len(y) <= 4 for x, y in wins)
    assert wins[1][0][0] == ids[3]  # window 2 is conditioned on the last token of window 1


def test_formulas_and_errors():
    assert bits_per_byte(math.log(2) * 8, 8) == pytest.approx(1.0)
    assert perplexity(0.0, 5) == 1.0
    with pytest.raises(ValueError, match="at least one byte"):
        bits_per_byte(1.0, 0)
