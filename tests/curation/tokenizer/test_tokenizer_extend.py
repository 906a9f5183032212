"""Extending a tokenizer keeps every old id and every old encoding of text without the new strings, round-trips,
and reports savings per addition that add up to what the extended tokenizer really saves."""

import json

import pytest
from tokenizer_fixtures import build_run

from curation.tokenizer.config import TokenizerExtendConfig, TokenizerExtendError, TokenizerTrainConfig
from curation.tokenizer.extend import extend
from curation.tokenizer.train import train
from tokenwise.tokenizer_specs import TokenizerSpecError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = build_run(
        tmp_path_factory.mktemp("extrun"), langs=("de", "ru"), catalogs=2, code_files=20, docs_files=10, max_units=200
    )
    train(TokenizerTrainConfig(name="base", vocab_size=600, domains=["ui"], sample_chars=80_000), str(run))
    return run


@pytest.mark.parametrize("candidates", ["bpe", "ngrams"])
def test_extension_keeps_ids_and_old_encodings(run, candidates):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    cfg = TokenizerExtendConfig(
        name=f"ext_{candidates}",
        base="run:base",
        domains=["code"],
        max_new_tokens=24,
        min_saved=2,
        candidate_vocab=1500,
        sample_chars=120_000,
        candidates=candidates,
    )
    meta = extend(cfg, str(run))
    old = Tokenizer.from_file(str(run / "tokenizers" / "base" / "tokenizer.json"))
    new = Tokenizer.from_file(str(run / "tokenizers" / cfg.name / "tokenizer.json"))
    added = [a["token"] for a in meta["added"]]
    assert 0 < len(added) <= 24
    # every old id keeps its token; new ids follow the old vocab
    old_vocab = old.get_vocab(with_added_tokens=True)
    assert all(new.token_to_id(t) == i for t, i in old_vocab.items())
    assert sorted(a["id"] for a in meta["added"]) == list(range(len(old_vocab), len(old_vocab) + len(added)))
    # texts without any new string encode exactly as before; all texts round-trip
    ui_texts = [t for t in _texts(run, "ui") if not any(a in t for a in added)]
    assert len(ui_texts) > 100
    for t in ui_texts:
        assert new.encode(t, add_special_tokens=False).ids == old.encode(t, add_special_tokens=False).ids
    for t in _texts(run, "code"):
        assert new.decode(new.encode(t, add_special_tokens=False).ids) == t
    # per-addition savings are positive and add up to the measured saving of the real tokenizer on the sample
    assert all(a["tokens_saved"] >= 2 for a in meta["added"])
    s = meta["sample"]
    measured = s["tokens_before"] - s["tokens_after"]
    assert measured > 0 and abs(meta["added"][-1]["cumulative_saved"] - measured) <= 0.02 * s["tokens_before"]
    assert meta["checks"]["ids_moved"] == 0 and meta["checks"]["encodings_changed"] == 0
    assert meta["checks"]["roundtrip_failures_after"] == 0
    auto = AutoTokenizer.from_pretrained(str(run / "tokenizers" / cfg.name))
    assert len(auto) == len(old_vocab) + len(added) and auto.eos_token == "<|endoftext|>"
    assert json.loads((run / "tokenizers" / cfg.name / "meta.json").read_text())["base"] == "run:base"


def _texts(run, domain):
    import pyarrow.parquet as pq

    return [r["text"] for r in pq.read_table(run / "curated").to_pylist() if r["domain"] == domain]


def test_bad_bases_fail_with_the_fix_named(run, tmp_path):
    with pytest.raises(TokenizerExtendError, match="only Hugging Face tokenizers"):
        extend(TokenizerExtendConfig(name="x", base="tiktoken:cl100k_base"), str(run))
    with pytest.raises(TokenizerSpecError, match="no tokenizer.json"):
        extend(TokenizerExtendConfig(name="x", base=f"hf:{tmp_path}/nope"), str(run))
    with pytest.raises(TokenizerExtendError, match="empty corpus"):
        extend(TokenizerExtendConfig(name="x", base="run:base", domains=["nothing"]), str(run))


def test_model_base_and_per_document_cap(run):
    """A model dir's tokenizer extends (model:NAME); max_doc_chars spreads the sample over more documents."""
    import shutil

    from curation.tokenizer.data import shard_paths
    from curation.tokenizer.extend import domain_texts

    shutil.copytree(run / "tokenizers" / "base", run / "models" / "m")
    meta = extend(TokenizerExtendConfig(name="m_code", base="model:m", domains=["code"], max_new_tokens=8,
                                        sample_chars=20_000, max_doc_chars=500), str(run))  # fmt: skip
    assert meta["base_vocab_size"] == 600 and meta["checks"]["ids_moved"] == 0
    shards = shard_paths(str(run), "curated")
    whole = domain_texts(shards, TokenizerExtendConfig(name="a", base="x", sample_chars=20_000), False, 20_000)
    capped = domain_texts(shards, TokenizerExtendConfig(name="a", base="x", max_doc_chars=500), False, 20_000)
    assert max(map(len, capped)) <= 500 and len(capped) > len(whole)
