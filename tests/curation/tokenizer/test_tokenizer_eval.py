"""Tokenizer evaluation: metrics equal hand computations, premium on a toy parallel set is exact, invalid pairs are
flagged, gates fail naming the metric, bad references fail early, and locales map to FLORES keys."""

import json
import math
from collections import Counter

import pytest
from tokenizer_fixtures import write_curated
from typer.testing import CliRunner

from curation.languages import flores_key, language_info, unique_keys
from curation.tokenizer.config import TokenizerEvalConfig
from curation.tokenizer.evaluate import check_gates, evaluate, gini, renyi_efficiency
from tokenwise.splits import is_heldout
from tokenwise.tokenizer_specs import TokenizerSpecError, load_tokenizer

EN = {"u1": "a b", "u2": "c d e", "u3": "a c"}
DE = {"u1": "a b x y", "u2": "c d e x z w", "u3": "a c x"}
HI = {"u1": "q q q q q", "u2": "a  b"}  # q is unknown to the word-level tokenizer; "a  b" loses a space


def _heldout_units(n):
    out, i = [], 0
    while len(out) < n:
        if is_heldout(f"doc{i}", f"unit{i}"):
            out.append(f"unit{i}")
        i += 1
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    root = tmp_path_factory.mktemp("evalrun")
    units = dict(zip(["u1", "u2", "u3"], _heldout_units(3), strict=True))
    rows = []
    for lang, texts in (("en", EN), ("de", DE), ("hi", HI)):
        for u, text in texts.items():
            rows.append(
                {"id": f"{lang}/{u}", "text": text, "source": "toy", "lang": lang, "domain": "ui", "unit_id": units[u]}
            )
    write_curated(root, iter(rows))
    words = sorted({w for t in [*EN.values(), *DE.values()] for w in t.split()})
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    wl = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wl.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    (root / "wl").mkdir()
    wl.save(str(root / "wl" / "tokenizer.json"))
    cfg = TokenizerEvalConfig(
        tokenizers=["tiktoken:cl100k_base", f"hf:{root / 'wl'}"],
        references=[f"hf:{root / 'wl'}"],
        reference=f"hf:{root / 'wl'}",
        bootstrap=50,
        throughput_chars=1000,
    )
    return root, cfg, evaluate(cfg, str(root))


def test_metrics_equal_hand_computation(toy):
    root, _, report = toy
    enc = load_tokenizer("tiktoken:cl100k_base")
    res = report["results"]["cl100k_base"]
    for key, texts in (("eng_Latn", EN), ("deu_Latn", DE)):
        ids = [enc.encode(t) for t in texts.values()]
        n_tok = sum(map(len, ids))
        m = res["languages"][key]["metrics"]
        assert m["tokens"]["value"] == n_tok and m["tokens"]["n"] == 3
        assert m["fertility"]["value"] == pytest.approx(n_tok / sum(len(t.split()) for t in texts.values()))
        assert m["bytes_per_token"]["value"] == pytest.approx(sum(len(t.encode()) for t in texts.values()) / n_tok)
        assert m["chars_per_token"]["value"] == pytest.approx(sum(map(len, texts.values())) / n_tok)
        counts = Counter(i for x in ids for i in x)
        p = [c / n_tok for c in counts.values()]
        h = math.log(sum(x**2.5 for x in p)) / (1 - 2.5)
        assert m["renyi_efficiency"]["value"] == pytest.approx(h / math.log(enc.vocab_size))
        wl_tokens = sum(len(t.split()) for t in texts.values())
        assert m["nsl"]["value"] == pytest.approx(n_tok / wl_tokens)
        assert m["tokens_saved_vs_wl"]["value"] == pytest.approx(1 - n_tok / wl_tokens)
        lo, hi = m["fertility"]["ci95"]
        assert lo <= m["fertility"]["value"] <= hi
        assert m["unk_rate"]["value"] == 0 and m["roundtrip_failures"]["value"] == 0 and m["valid"]
    de_tok = sum(len(enc.encode(t)) for t in DE.values())
    en_tok = sum(len(enc.encode(t)) for t in EN.values())
    assert res["languages"]["deu_Latn"]["metrics"]["premium_vs_eng_Latn"]["value"] == pytest.approx(de_tok / en_tok)
    en_words = sum(len(t.split()) for t in EN.values())
    assert res["summary"]["english_parallel_cost_vs_wl"] == pytest.approx(en_tok / en_words)
    assert res["languages"]["deu_Latn"]["language_info"] | {} == language_info("de") | {"key": "deu_Latn"}


def test_toy_premium_unk_flag_roundtrip_and_gini(toy):
    root, _, report = toy
    res = report["results"]["wl"]
    de = res["languages"]["deu_Latn"]["metrics"]
    assert de["premium_vs_eng_Latn"]["value"] == pytest.approx(13 / 7) and de["premium_vs_eng_Latn"]["n"] == 3
    assert res["languages"]["eng_Latn"]["metrics"]["premium_vs_eng_Latn"]["value"] == 1.0
    hi = res["languages"]["hin_Deva"]["metrics"]
    assert hi["unk_rate"]["value"] == pytest.approx(5 / 7) and hi["valid"] is False
    assert res["summary"]["invalid_pairs"] == ["hin_Deva"]
    assert res["summary"]["premium_max"] == pytest.approx(13 / 7)  # the invalid Hindi pair is not averaged in
    assert res["summary"]["fairness_gini"] == pytest.approx(gini([1.0, 13 / 7]))
    assert gini([1.0, 3.0]) == pytest.approx(0.25)
    assert res["roundtrip"]["failures"] == 2  # "q q q q q" decodes to [UNK]s, "a  b" loses a space
    ex = {e["id"]: e for e in res["roundtrip"]["examples"]}
    assert ex["hi/u2"]["expected"] == "a  b" and ex["hi/u2"]["got"] == "a b" and ex["hi/u2"]["at"] == 2
    csv = (root / "tokenizers" / "premium_vs_eng_Latn.csv").read_text().splitlines()
    hin = next(r for r in csv if r.startswith("hin_Deva"))
    assert csv[0] == "language,cl100k_base,wl" and hin.endswith(",invalid") and len(csv) == 4
    saved = json.loads((root / "tokenizers" / "eval.json").read_text())
    assert set(saved["results"]) == {"cl100k_base", "wl"}


def test_gates_name_the_failing_metric(toy, tmp_path):
    root, cfg, report = toy
    assert check_gates(report, ["premium_max>3"]) == []
    fails = check_gates(report, ["wl:premium_max>1.5"])
    assert len(fails) == 1 and "premium_max" in fails[0] and "wl" in fails[0]
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        check_gates(report, ["nope>1"])
    from tokenwise.cli import app

    conf = tmp_path / "c.yaml"
    conf.write_text(f"tokenizer:\n  eval: {json.dumps(cfg.model_dump(mode='json'))}\n")
    r = CliRunner().invoke(
        app, ["tokenizer", "eval", "--config", str(conf), "--run", str(root), "--fail-if", "wl:premium_max>1.5"]
    )
    assert r.exit_code == 1 and "GATE FAILED: wl: premium_max" in r.output
    ok = CliRunner().invoke(
        app, ["tokenizer", "eval", "--config", str(conf), "--run", str(root), "--fail-if", "premium_max>100"]
    )
    assert ok.exit_code == 0, ok.output
    en_cost = report["results"]["cl100k_base"]["summary"]["english_cost_vs_wl_ui"]
    assert "saved vs wl by domain: ui " in ok.output
    assert f"English tokens vs wl by domain: ui {en_cost:.2f}x" in ok.output


def test_bad_reference_fails_before_evaluation(toy, tmp_path):
    root, cfg, _ = toy
    (tmp_path / "bad.json").write_text("{}")
    for bad, why in ((f"hf:{tmp_path}/missing", "no tokenizer.json"), (str(tmp_path / "bad.json"), "not a tokenizer")):
        with pytest.raises(TokenizerSpecError, match=why):
            evaluate(cfg.model_copy(update={"references": [bad]}), str(root))
    with pytest.raises(ValueError, match="no held-out documents"):
        evaluate(cfg.model_copy(update={"domains": ["code"]}), str(root))


def test_flores_keys_and_renyi_bounds():
    assert [flores_key(x) for x in ("hi", "zh_CN", "zh_TW", "pt_BR", "sr@latin", "sr", "en", "ar", "my")] == [
        "hin_Deva",
        "zho_Hans",
        "zho_Hant",
        "por_Latn",
        "srp_Latn",
        "srp_Cyrl",
        "eng_Latn",
        "arb_Arab",
        "mya_Mymr",
    ]
    assert unique_keys(["pt", "pt_BR"]) == {"pt": "por_Latn", "pt_BR": "por_Latn_BR"}
    assert flores_key("xx", "Привет мир") == "xx_Cyrl" and not language_info("xx")["known"]
    assert renyi_efficiency(__import__("numpy").ones(16), 16, 2.5) == pytest.approx(1.0)
