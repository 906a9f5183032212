"""Tokenizer training streams curated Parquet by a plan, round-trips held-out text, loads in transformers, and
rejects bad input before training."""

import json

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from tokenizer_fixtures import build_run

from curation.tokenizer.config import (
    TokenizerSection,
    TokenizerTrainConfig,
    TokenizerTrainError,
    load_tokenizer_section,
)
from curation.tokenizer.train import check_inputs, train
from tokenwise.config import load_section
from tokenwise.splits import is_heldout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(
        tmp_path_factory.mktemp("tokrun"),
        langs=("de", "hi", "ru"),
        catalogs=3,
        code_files=25,
        docs_files=25,
        max_units=250,
    )


def heldout_texts(run):
    t = pq.read_table(run / "curated").to_pylist()
    return [r["text"] for r in t if is_heldout(r["id"], r["unit_id"])]


def test_bpe_roundtrips_every_heldout_doc_and_loads_with_autotokenizer(run):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    meta = train(TokenizerTrainConfig(name="bpe1k", vocab_size=1000, temperature=3.0, sample_chars=200_000), str(run))
    out = run / "tokenizers" / "bpe1k"
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(out))
    texts = heldout_texts(run)
    assert len(texts) > 50
    for text in texts:
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    assert [auto.decode(auto.encode(t, add_special_tokens=False)) for t in texts[:50]] == texts[:50]
    assert auto.eos_token == "<|endoftext|>" and auto.pad_token == "<|pad|>" and len(auto) == 1000
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|pad|>") == 1
    saved = json.loads((out / "meta.json").read_text())
    assert saved["vocab_size"] == meta["vocab_size"] == 1000
    assert len(saved["manifest_hash"]) == 16 and saved["peak_rss_mb"] > 0 and saved["train_seconds"] > 0
    assert set(saved["plan"]["languages"]) == {"en", "de", "hi", "ru"}
    assert 150_000 < saved["sampled_chars_total"] < 250_000


def test_unigram_with_nfkc_trains_and_roundtrips_normalized_text(run):
    from tokenizers import Tokenizer

    cfg = TokenizerTrainConfig(
        name="uni", model="unigram", vocab_size=800, normalization="nfkc", sample_chars=60_000, domains=["ui"]
    )
    train(cfg, str(run))
    tok = Tokenizer.from_file(str(run / "tokenizers" / "uni" / "tokenizer.json"))
    assert tok.get_vocab_size() <= 800
    for text in heldout_texts(run)[:100]:
        assert tok.decode(tok.encode(text).ids) == tok.normalizer.normalize_str(text)


def test_plan_weights_decide_the_sampled_mix(run):
    (run / "plans").mkdir(exist_ok=True)
    plan = {
        "name": "hi_de",
        "tokenizer": "cl100k_base",
        "budget_tokens": 1000,
        "languages": {
            "de": {"weight": 0.25, "tokens": 250, "epochs": 1.0},
            "hi": {"weight": 0.75, "tokens": 750, "epochs": 3.0},
        },
    }
    (run / "plans" / "hi_de.json").write_text(json.dumps(plan))
    meta = train(TokenizerTrainConfig(name="hide", vocab_size=600, plan="hi_de", sample_chars=40_000), str(run))
    by_lang = {}
    for key, n in meta["sampled_chars"].items():
        by_lang[key.split("/")[0]] = by_lang.get(key.split("/")[0], 0) + n
    assert set(by_lang) == {"de", "hi"}
    share = by_lang["hi"] / sum(by_lang.values())
    assert 0.65 < share < 0.85, by_lang
    assert meta["plan"]["languages"]["hi"]["rate"] > 1  # hi needs repeats (epochs) to reach its share


def test_bad_input_fails_before_training(run, tmp_path):
    with pytest.raises(TokenizerTrainError, match="empty corpus: no shard"):
        check_inputs(TokenizerTrainConfig(name="x"), str(tmp_path))
    with pytest.raises(TokenizerTrainError, match="empty corpus: no training documents"):
        check_inputs(TokenizerTrainConfig(name="x", domains=["nonexistent"]), str(run))
    (run / "plans").mkdir(exist_ok=True)
    (run / "plans" / "ta.json").write_text(json.dumps({"languages": {"ta": {"weight": 1.0}, "de": {"weight": 1.0}}}))
    with pytest.raises(TokenizerTrainError, match=r"plan languages \['ta'\] have no training data"):
        check_inputs(TokenizerTrainConfig(name="x", plan="ta"), str(run))
    skipped = check_inputs(TokenizerTrainConfig(name="x", plan="ta", on_missing_language="skip"), str(run))
    assert skipped["rates"]["skipped_languages"] == ["ta"] and list(skipped["rates"]["languages"]) == ["de"]
    with pytest.raises(TokenizerTrainError, match="no plan file"):
        check_inputs(TokenizerTrainConfig(name="x", plan="missing"), str(run))
    with pytest.raises(TokenizerTrainError, match="smaller than the alphabet"):
        check_inputs(TokenizerTrainConfig(name="x", vocab_size=200), str(run))
    meta_cfg = TokenizerTrainConfig(
        name="x",
        vocab_size=100,
        pre_tokenization="metaspace",
        unk_token="<unk>",
        special_tokens=["<unk>"],
        eos_token=None,
        pad_token=None,
    )
    with pytest.raises(TokenizerTrainError, match="smaller than the alphabet"):
        check_inputs(meta_cfg, str(run))  # de+hi+ru+code use more than 100 distinct characters
    with pytest.raises(ValidationError, match="conflicting special tokens"):
        TokenizerTrainConfig(name="x", special_tokens=["<s>", "<s>"])
    with pytest.raises(ValidationError, match="conflicting special tokens: bos_token"):
        TokenizerTrainConfig(name="x", bos_token="<s>")
    assert not (run / "tokenizers" / "x").exists()


def test_cli_train_reports_bad_input_and_trains(run, tmp_path):
    from typer.testing import CliRunner

    from tokenwise.cli import app

    conf = tmp_path / "t.yaml"
    conf.write_text("tokenizer:\n  train:\n    - {name: cli1k, vocab_size: 600, plan: nope, sample_chars: 20000}\n")
    r = CliRunner().invoke(app, ["tokenizer", "train", "--config", str(conf), "--run", str(run)])
    assert r.exit_code == 2 and "no plan file" in r.output
    conf.write_text("tokenizer:\n  train:\n    - {name: cli1k, vocab_size: 600, sample_chars: 20000}\n")
    r = CliRunner().invoke(app, ["tokenizer", "train", "--config", str(conf), "--run", str(run)])
    assert r.exit_code == 0 and "cli1k: vocab 600" in r.output, r.output
    r = CliRunner().invoke(app, ["tokenizer", "train", "--config", str(conf), "--run", str(run)])
    assert "up to date" in r.output  # the completion marker matches: no retraining


def test_demo_config_section_validates():
    section = load_tokenizer_section("configs/demo.yaml")
    assert isinstance(section, TokenizerSection) and {t.name for t in section.train} >= {"multi16k", "multi8k"}
    assert load_section("configs/demo.yaml", "tokenizer", TokenizerSection).eval.reference == "tiktoken:cl100k_base"


def test_train_reports_und_share_and_documents_cut_at_max_doc_chars(tmp_path):
    import itertools

    from tokenizer_fixtures import code_rows, ui_rows, write_curated
    from typer.testing import CliRunner

    from tokenwise.cli import app

    run = tmp_path / "run"
    code = ({**r, "lang": None} for r in code_rows(6))  # as the corpus stage labels code: no language (und)
    write_curated(run, itertools.chain(ui_rows(["de"], 1, 150), code))
    rows = [r for r in pq.read_table(run / "curated").to_pylist() if not is_heldout(r["id"], r["unit_id"])]
    cut = [r for r in rows if len(r["text"]) > 300]
    und = sum(min(len(r["text"]), 300) for r in rows if r["lang"] is None)
    total = sum(min(len(r["text"]), 300) for r in rows)
    assert cut and und
    # every document exactly once: the target exceeds the corpus and max_epochs caps the rate at 1
    cfg = TokenizerTrainConfig(name="cut", vocab_size=600, sample_chars=10**8, max_epochs=1.0, max_doc_chars=300)
    meta = train(cfg, str(run))
    assert meta["cut"]["documents"] == len(cut)
    assert meta["cut"]["chars_removed"] == sum(len(r["text"]) - 300 for r in cut)
    assert meta["sampled_chars_total"] == total and meta["und_chars"] == und
    assert meta["und_share"] == round(und / total, 4)
    conf = tmp_path / "cut.yaml"
    conf.write_text(f"tokenizer:\n  train:\n    - {cfg.model_dump_json()}\n")
    r = CliRunner().invoke(app, ["tokenizer", "train", "--config", str(conf), "--run", str(run)])
    assert r.exit_code == 0, r.output
    assert f"und (code/docs) {und / total:.1%} of sampled chars, {len(cut)} docs cut at max_doc_chars" in r.output
