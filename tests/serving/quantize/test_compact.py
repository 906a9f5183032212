"""Vocabulary trimming: kept-set selection, respelling, the compact model's exactness on kept tokens, serving it
through the global-id wrappers (quantized too), the stage's report and rerun, and a drafter on the kept vocabulary
whose speculative output equals the compact target's greedy output."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch

from finetune.testing import mo_docs, stdlib_docs, tiny_llama, train_tokenizer, write_curated
from serving.quantize.compact import (
    FLOOR_LOGIT,
    case_variant_ids,
    choose_rows,
    compact_model,
    greedy_agreement,
    run_compact,
    script_char_ids,
    select_vocab,
    served_scripts,
    split_part,
    to_global,
)
from serving.quantize.config import CompactConfig, CompactReportSpec
from tokenwise.vocab import KeptVocab, LocalTokenizer, byte_token_ids, select_kept

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A curated dir (stdlib code + German UI strings), a byte-level BPE and a tiny untied Llama on it."""
    root = tmp_path_factory.mktemp("compact")
    docs = stdlib_docs(("json", "textwrap", "heapq", "bisect", "fnmatch", "glob")) + mo_docs(("de",), limit=150)
    write_curated(root, docs)
    tok = train_tokenizer(root / "tokenizers" / "tiny", [d["text"] for d in docs], vocab_size=600)
    tiny_llama(root / "models" / "base", tok, hidden=32, layers=2, seed=3, tie_word_embeddings=False)
    return root


def _tok(run: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(run / "models" / "base"))


def _model(run: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(run / "models" / "base"), dtype=torch.float64).eval()


def test_select_kept_takes_frequent_tokens_then_specials_and_bytes(run):
    tok = _tok(run)
    counts = Counter({300: 50, 301: 30, 302: 15, 303: 5})
    kept = select_kept(counts, tok, coverage=0.9)
    assert kept[:3] == [300, 301, 302] and 303 not in kept  # 95% of counted tokens reached at 302
    assert set(byte_token_ids(tok).values()) <= set(kept) and tok.eos_token_id in kept
    assert len(select_kept(counts, tok, coverage=1.0)) == len(kept) + 1


def test_row_count_is_chosen_on_the_selection_split():
    ranked = [10, 11, 12, 13]  # counted, most frequent first; 0 is forced (bytes, specials, script characters)
    sel = Counter({0: 50, 10: 30, 11: 15, 12: 4, 99: 1})  # 99 was never counted: coverage tops out at 99%
    assert choose_rows(ranked, [0], sel, 0.8) == (1, 0.8)
    assert choose_rows(ranked, [0], sel, 0.95) == (2, 0.95)
    assert choose_rows(ranked, [0, 11], sel, 0.95) == (1, 0.95)  # a forced token is not counted twice
    assert choose_rows(ranked, [0], sel, 0.999) == (4, 0.99)  # out of reach: every counted token
    assert choose_rows(ranked, [0], sel, 0.5) == (0, 0.5)
    parts = Counter(split_part(f"doc{i}", None, 0.1) for i in range(2000))
    assert 120 < parts["heldout"] < 280 and 120 < parts["select"] < 280  # ~10% each, the rest counted
    assert Counter(split_part(f"doc{i}", None, 0.0) for i in range(2000))["select"] == 0


def test_single_character_tokens_of_the_served_scripts():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "\u2581日": 1, "本": 2, "語": 3, "a": 4, "\u2581the": 5, "ж": 6, "7": 7, "!": 8}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")))
    scripts = served_scripts(Counter({1: 10, 4: 100, 5: 100, 6: 1}), tok, 0.01)
    assert set(scripts) == {"CJK", "LATIN"}  # Cyrillic: 1 of 411 letters, under the 1% share
    assert script_char_ids(tok, scripts) == [1, 2, 3, 4]  # not words, digits, punctuation or unserved scripts


def test_case_and_leading_space_variants_of_kept_tokens():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "\u2581Init": 1, "INIT": 2, "init": 3, "\u2581INIT": 4, "Initial": 5, "\u2581init": 6,
             "Integer": 7, "\u2581": 8}  # fmt: skip
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")))
    assert case_variant_ids(tok, [1]) == [2, 3, 4, 6]  # not Initial (another word) nor the kept id itself
    assert case_variant_ids(tok, [8]) == []  # the bare word mark has no variants
    assert case_variant_ids(tok, [1, 3]) == [2, 4, 6]
    counts, select = Counter({1: 10, 7: 5}), Counter({1: 3})
    cfg = CompactConfig(model="m", output="o", select_share=0.1, goal_coverage=0.5)
    plain, info = select_vocab(cfg, tok, counts, select)
    wide, wide_info = select_vocab(cfg.model_copy(update={"case_variants": True}), tok, counts, select)
    assert wide[: len(plain)] == plain and set(wide) - set(plain) == {2, 3, 4, 6}  # appended after the chosen rows
    assert info["case_variant_tokens"] == 0 and wide_info["case_variant_tokens"] == 4


def test_respell_round_trips_any_text_with_kept_tokens_only(run):
    tok = _tok(run)
    kept = KeptVocab(select_kept(Counter({300: 1}), tok, 1.0), len(tok), tok.eos_token_id).attach(tok)
    for text in ["def main():\n    return json.dumps(x)", "Datei konnte nicht geöffnet werden", "日本語 ✓"]:
        ids = tok.encode(text, add_special_tokens=False)
        spelled = kept.respell(ids)
        assert all(i in kept for i in spelled) and tok.decode(spelled) == text
        assert len(spelled) >= len(ids)
    local = LocalTokenizer(tok, kept)
    assert local.decode(local("Datei geöffnet")["input_ids"]) == "Datei geöffnet"
    assert len(local) == len(kept) and local.eos_token_id == kept.local[tok.eos_token_id]


@pytest.mark.parametrize("tied", [False, True])
def test_compact_model_equals_full_model_on_kept_tokens(run, tied):
    tok = _tok(run)
    full = _model(run)
    if tied:
        full.lm_head.weight = full.model.embed_tokens.weight
    ids = list(range(len(tok)))
    torch.Generator().manual_seed(0)
    perm = [ids[i] for i in torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).tolist()]
    kept = KeptVocab(perm[: len(ids) // 2] + [tok.eos_token_id] * (tok.eos_token_id not in perm[: len(ids) // 2]),
                     len(tok), tok.eos_token_id)  # fmt: skip
    import copy

    wrapped = to_global(compact_model(copy.deepcopy(full), tok, kept), kept)
    assert wrapped.get_input_embeddings().inner.num_embeddings == len(kept)
    x = torch.tensor([kept.ids[:12]])
    with torch.inference_mode():
        a, b = full(input_ids=x).logits[0], wrapped(input_ids=x).logits[0]
    keep = torch.tensor(kept.ids)
    torch.testing.assert_close(b[:, keep], a[:, keep])
    outside = torch.tensor(sorted(set(ids) - set(kept.ids)))
    assert (b[:, outside] == FLOOR_LOGIT).all()
    assert wrapped.config.eos_token_id == tok.eos_token_id and wrapped.config.vocab_size == len(tok)


def test_whole_vocab_in_another_order_is_the_same_model(run):
    """Keeping every token, permuted: the wrapped compact model is the full model, greedy output identical."""
    from serving.decode.engine import Engine

    tok = _tok(run)
    full = _model(run)
    perm = torch.randperm(len(tok), generator=torch.Generator().manual_seed(1)).tolist()
    kept = KeptVocab(perm, len(tok), tok.eos_token_id)
    import copy

    wrapped = to_global(compact_model(copy.deepcopy(full), tok, kept), kept)
    prompt = tok.encode("def dumps(obj):\n", add_special_tokens=False)
    a, _ = Engine(full).generate(prompt, max_new_tokens=12)
    b, _ = Engine(wrapped).generate(prompt, max_new_tokens=12)
    assert a == b


def _compact_cfg(**kw) -> CompactConfig:
    report = CompactReportSpec(eval_docs=3, prompts=3, prompt_bytes=80, reference_bytes=200, new_tokens=6, rounds=2)
    return CompactConfig(model="run:base", output="base-compact", report=report, **kw)


@pytest.fixture(scope="module")
def compacted(run) -> dict:
    return run_compact(_compact_cfg(train_coverage=0.95), str(run))


def test_stage_writes_compact_dir_and_report(run, compacted):
    d = run / "models" / "base-compact"
    kept = KeptVocab.load(d)
    assert (d / "_DONE.json").is_file() and (d / "tokenizer.json").is_file()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["vocab_size"] == len(kept) == compacted["kept"] < compacted["vocab_size"]
    assert 0.5 < compacted["heldout_coverage"] <= 1.0 and compacted["coverage_met"] == (
        compacted["heldout_coverage"] >= 0.999
    )
    sel = compacted["selection"]  # the row count: chosen on the selection split, every counted token if out of reach
    assert sel["select_tokens"] > 0 and sel["select_goal_met"] == (sel["select_coverage"] >= 0.999)
    if sel["select_goal_met"]:  # the fewest frequent counted tokens that meet the goal on the selection split
        assert sel["n_frequent"] == sel["rows_for_goal"] <= sel["n_counted_distinct"]
    else:  # out of reach: the frequent tokens (up to train_coverage) of the counted and the selection split together
        assert sel["rows_for_goal"] is None and sel["n_frequent"] > 0
    rows = compacted["models"]
    assert set(rows) == {"untrimmed", "compact", "compact_int8_weight_only"}
    assert rows["compact"]["weight_bytes"] < rows["untrimmed"]["weight_bytes"]
    assert rows["compact_int8_weight_only"]["weight_bytes"] < rows["compact"]["weight_bytes"]
    for name in ("compact", "compact_int8_weight_only"):
        r = rows[name]
        assert {"size_ratio", "speed_ratio", "bits_per_byte_delta", "greedy_agreement"} <= set(r)
        assert 0 <= r["greedy_agreement"]["token_agreement"] <= 1 and len(r["outputs"]) == 3
    for r in rows.values():  # tokens/s: the median of the interleaved timed passes, one per round
        assert len(r["tokens_per_second_passes"]) == compacted["rounds"]
        assert r["tokens_per_second"] == statistics.median(r["tokens_per_second_passes"]) > 0
    # rerun with the same config and inputs: the marker matches, the report is read back
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    assert run_compact(_compact_cfg(train_coverage=0.95), str(run)) == compacted
    assert (d / "model.safetensors").stat().st_mtime_ns == mtime


def test_compact_dir_serves_through_the_backend_quantized(run, compacted):
    from serving.api.backend import EngineBackend, GenParams
    from serving.api.config import ModelSpec

    d = str(run / "models" / "base-compact")
    kept = KeptVocab.load(d)
    for quant in ("none", "int8_weight_only", "int8_dynamic_outliers"):
        b = EngineBackend(ModelSpec(name="c", path=d, quantization=quant))
        ids = b.encode("def heappush(heap, item): ä")
        assert all(i in kept for i in ids) and b.decode(ids) == "def heappush(heap, item): ä"
        steps = list(b.generate(ids, GenParams(max_tokens=5)))
        assert len(steps) >= 1 and all(s.token_id in kept for s in steps)
        assert b.logprob_sum(ids[:3], ids[3:]) < 0


def test_draft_on_kept_vocab_speculates_exactly(run, compacted):
    """A drafter trained on the compact model's kept vocabulary: speculative greedy == the compact target's."""
    from finetune.config import DataConfig, ModelSpec, PretrainConfig
    from finetune.pretrain import run_pretrain
    from serving.decode.engine import Engine
    from serving.models import load_model

    cfg = PretrainConfig(data=DataConfig(seq_len=32, eval_docs=4), max_positions=128, models=[
        ModelSpec(name="draft", vocab="run:base-compact", hidden_size=16, layers=1, heads=2, intermediate_size=32,
                  steps=3, batch_size=4)])  # fmt: skip
    out = run_pretrain(cfg, str(run))
    d = run / "models" / "draft"
    assert KeptVocab.load(d).ids == KeptVocab.load(run / "models" / "base-compact").ids
    assert json.loads((d / "config.json").read_text())["vocab_size"] == compacted["kept"]
    assert out["draft"]["eval_bits_per_byte"] > 0
    target, draft = load_model(run / "models" / "base-compact", "cpu"), load_model(d, "cpu")
    tok = _tok(run)
    kept = KeptVocab.load(d).attach(tok)
    engine = Engine(target, draft)
    for text in ("import json\n", "Datei "):
        prompt = kept.respell(tok.encode(text, add_special_tokens=False))
        plain, _ = engine.generate(prompt, max_new_tokens=10)
        spec, stats = engine.generate(prompt, max_new_tokens=10, mode="speculative", k=3)
        assert spec == plain and stats["num_draft_tokens"] > 0
    # the quantize stage scores it on respelled text (tokens outside its vocabulary would be infinitely unlikely)
    import math

    import yaml

    from serving.quantize.stage import run_quantize_stage

    cfg = run / "q.yaml"
    cfg.write_text(yaml.safe_dump({"quantize": {"models": [{"name": "draft", "methods": ["int8_weight_only"]}],
                                                "eval_docs": 3, "eval_chars": 300, "speed_prompts": 1,
                                                "new_tokens": 4}}))  # fmt: skip
    run_quantize_stage(str(cfg), str(run))
    rows = json.loads((d / "quantized" / "report.json").read_text())["methods"]
    assert all(math.isfinite(r["bits_per_byte"]) and r["bits_per_byte"] < 20 for r in rows.values())


def test_top_keeps_the_most_frequent_and_everything_needed_to_respell(run):
    tok = _tok(run)
    counts = Counter({g: 1000 - g for g in range(300, 400)})
    kept = KeptVocab(select_kept(counts, tok, 1.0), len(tok), tok.eos_token_id,
                     {"n_frequent": len(select_kept(counts, tok, 1.0, forced=False))})  # fmt: skip
    small = kept.top(10, tok).attach(tok)
    assert small.ids[:10] == list(range(300, 310)) and 310 not in small
    assert set(byte_token_ids(tok).values()) <= set(small.ids) and tok.eos_token_id in small
    text = "def main():\n    return 0"
    assert tok.decode(small.respell(tok.encode(text, add_special_tokens=False))) == text


def test_greedy_agreement_counts():
    g = greedy_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [5, 6]])
    assert g["identical_share"] == 0.5 and g["token_agreement"] == 5 / 6
    assert g["matching_prefix_share"] == (0.5 + 1.0) / 2


def test_summary_names_the_fastest_compact_variant():
    from serving.quantize.compact import summarize

    def row(speed: float, size: float) -> dict:
        return {"speed_ratio": speed, "size_ratio": size, "bits_per_byte_delta": 0.01,
                "greedy_agreement": {"identical_share": 0.5}}  # fmt: skip

    report = {"kept": 10, "vocab_size": 20, "heldout_coverage": 0.99, "goal_coverage": 0.999, "coverage_met": False,
              "models": {"untrimmed": {}, "compact": row(1.1, 1.9), "compact_int8_weight_only": row(0.5, 3.4),
                         "compact_int8_dynamic_outliers": row(1.6, 3.3)}}  # fmt: skip
    line = summarize(report)
    assert "compact+int8_dynamic_outliers: 3.3x smaller, 1.60x tokens/s" in line and "not met" in line
