"""Tokenizer specs load real offline tokenizers; bad specs fail with the fix named."""

import pytest

from tokenwise.splits import is_heldout
from tokenwise.tokenizer_specs import TokenizerSpecError, load_tokenizer, short_name


def test_tiktoken_offline_roundtrip():
    tok = load_tokenizer("tiktoken:cl100k_base")
    text = "def f(x):\n    return x ** 2  # Привет, नमस्ते"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and tok.encode_batch([text]) == [ids]
    assert tok.vocab_size > 100_000 and short_name("tiktoken:o200k_base") == "o200k_base"


def test_o200k_offline_matches_the_reference_rust_implementation():
    import bpe_openai

    tok = load_tokenizer("tiktoken:o200k_base")
    text = "Tokens are the unit of cost. नमस्ते दुनिया — 東京は晴れ. def f(x): return x**2"
    assert tok.vocab_size == 200019 and tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == bpe_openai.get_encoding("o200k_base").encode(text)
    assert len(tok.encode(text)) < len(load_tokenizer("tiktoken:cl100k_base").encode(text))


def test_hf_tokenizer_from_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.train_from_iterator(["hello world " * 10, "tokens are cost"], trainers.BpeTrainer(vocab_size=300))
    (tmp_path / "mytok").mkdir()
    t.save(str(tmp_path / "mytok" / "tokenizer.json"))
    tok = load_tokenizer(f"hf:{tmp_path / 'mytok'}")
    assert tok.name == "mytok" and len(tok.encode("hello world")) >= 1
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "mytok").rename(tmp_path / "run" / "models" / "mymodel")  # a model dir's tokenizer: model:NAME
    tok = load_tokenizer("model:mymodel", str(tmp_path / "run"))
    assert tok.name == "mymodel" and len(tok.encode("hello world")) >= 1
    with pytest.raises(TokenizerSpecError, match="need a run directory"):
        load_tokenizer("model:mymodel")


def test_bad_specs(tmp_path):
    with pytest.raises(TokenizerSpecError, match="no tokenizer.json"):
        load_tokenizer(f"hf:{tmp_path}/missing")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(TokenizerSpecError, match="not a tokenizer.json"):
        load_tokenizer(f"hf:{tmp_path}/bad.json")
    with pytest.raises(TokenizerSpecError, match="unknown tiktoken encoding"):
        load_tokenizer("tiktoken:nope")
    with pytest.raises(TokenizerSpecError, match="unknown tokenizer kind"):
        load_tokenizer("sp:x")


def test_heldout_split_is_stable_and_by_unit():
    assert is_heldout("a", "u1") == is_heldout("b", "u1")
    share = sum(is_heldout(str(i)) for i in range(20000)) / 20000
    assert 0.08 < share < 0.12
