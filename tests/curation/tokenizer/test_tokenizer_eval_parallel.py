"""No language is dropped from tokenizer evaluation: the held-out split is sampled by unit, few-unit languages are
flagged (never left out), and ``tokenizer eval --parallel FILE`` scores every unit of an external set."""

import json
import logging

import pyarrow.parquet as pq
import pytest
from tokenizer_fixtures import build_run
from typer.testing import CliRunner

from curation.tokenizer.config import TokenizerEvalConfig, TokenizerEvalError
from curation.tokenizer.evaluate import evaluate, load_heldout
from curation.tokenizer.parallel import read_parallel
from tokenwise.splits import is_heldout

REF = {"tokenizers": [], "references": ["tiktoken:cl100k_base"], "reference": "tiktoken:cl100k_base"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(
        tmp_path_factory.mktemp("evalpar"), langs=("de", "my"), catalogs=3, code_files=5, docs_files=5, max_units=150
    )


def _heldout(run):
    return [r for r in pq.read_table(run / "curated").to_pylist() if is_heldout(r["id"], r["unit_id"])]


def test_capped_heldout_keeps_every_language_and_its_english_units(run, caplog):
    rows = _heldout(run)
    my_units = {r["unit_id"] for r in rows if r["lang"] == "my"}
    assert 3 < len(my_units) < 30
    cfg = TokenizerEvalConfig(**REF, max_docs_per_group=3, bootstrap=20, throughput_chars=1000, min_units=30)
    data = load_heldout([str(p) for p in sorted((run / "curated").glob("shard-*.parquet"))], cfg)
    kept_my = {u for u, lang in zip(data.units, data.langs, strict=True) if lang == "my"}
    kept_en = {u for u, lang in zip(data.units, data.langs, strict=True) if lang == "en"}
    assert len(kept_my) == 3 and kept_my <= kept_en  # the cap picks units, English follows them
    with caplog.at_level(logging.WARNING):
        rep = evaluate(cfg, str(run))
    s = rep["results"]["cl100k_base"]["summary"]
    langs = rep["results"]["cl100k_base"]["languages"]
    assert {"deu_Latn", "mya_Mymr"} <= set(langs) and s["premium_languages"] == 2 and s["premium_unmeasured"] == {}
    assert s["premium_worst_language"] == "mya_Mymr" and s["premium_few_units"] == {"deu_Latn": 3, "mya_Mymr": 3}
    lo, hi = s["premium_max_ci95"]
    assert lo <= s["premium_max"] <= hi and langs["mya_Mymr"]["metrics"]["premium_vs_eng_Latn"]["few_units"]
    assert "few parallel units" in caplog.text and "mya_Mymr" in caplog.text


def test_eval_parallel_scores_every_unit_and_matches_the_builtin_split(run, tmp_path):
    from tokenwise.cli import app

    rows = _heldout(run)
    units = {}
    for r in rows:
        if r["unit_id"]:
            units.setdefault(r["unit_id"], {})[r["lang"]] = r["text"]
    path = tmp_path / "flores-like set.jsonl"
    lines = []
    for i, (u, texts) in enumerate(sorted(units.items())):
        if i % 2:  # wide rows with FLORES keys ...
            keys = {"en": "eng_Latn", "de": "deu_Latn", "my": "mya_Mymr"}
            lines.append(json.dumps({"id": u, **{keys[k]: t for k, t in texts.items()}}, ensure_ascii=False))
        else:  # ... and long rows with locales
            lines += [json.dumps({"unit_id": u, "lang": k, "text": t}, ensure_ascii=False) for k, t in texts.items()]
    bad = ["{not json", json.dumps([1, 2]), json.dumps({"unit_id": "x", "lang": "de", "text": ""}),
           json.dumps({"unit_id": "x", "lang": "de", "text": 3})]  # fmt: skip
    path.write_text("\n".join(lines[:5] + bad + lines[5:]) + "\n", encoding="utf-8")
    conf = tmp_path / "eval.yaml"
    conf.write_text(
        "tokenizer:\n  eval:\n    tokenizers: []\n    references: [tiktoken:cl100k_base]\n"
        "    reference: tiktoken:cl100k_base\n    bootstrap: 20\n    throughput_chars: 1000\n"
        "    max_docs_per_group: 100000\n"
    )
    r = CliRunner().invoke(
        app, ["tokenizer", "eval", "--config", str(conf), "--run", str(run), "--parallel", str(path)]
    )
    assert r.exit_code == 0, r.output
    assert f"{len(units)} units" in r.output and "4 rows quarantined" in r.output
    rep = json.loads((run / "tokenizers" / "eval_flores-like_set.json").read_text())
    assert (
        rep["dataset"] == "parallel"
        and rep["units"] == len(units)
        and rep["heldout_documents"] == sum(map(len, units.values()))
    )
    assert [q["line"] for q in rep["parallel"]["quarantine"]] == [6, 7, 8, 9]
    assert rep["parallel"]["quarantine"][0]["reason"].startswith("bad_json")
    quarantined = (run / "tokenizers" / "quarantine" / "eval_flores-like_set.jsonl").read_text().splitlines()
    assert len(quarantined) == 4 and "empty_text" in quarantined[2]
    builtin = evaluate(TokenizerEvalConfig(**REF, max_docs_per_group=100000, bootstrap=20, throughput_chars=1000),
                       str(run))  # fmt: skip
    for key in ("deu_Latn", "mya_Mymr"):
        got = rep["results"]["cl100k_base"]["languages"][key]["metrics"]["premium_vs_eng_Latn"]
        want = builtin["results"]["cl100k_base"]["languages"][key]["metrics"]["premium_vs_eng_Latn"]
        assert (got["value"], got["n"]) == (want["value"], want["n"])
    assert (run / "tokenizers" / "eval_flores-like_set_premium_vs_eng_Latn.csv").exists()


def test_parallel_reader_rejects_a_file_without_usable_rows(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"unit_id": "u", "lang": "de"}\n\xff\xfe\n[]\n')
    with pytest.raises(
        TokenizerEvalError, match=r"bad.jsonl: no usable rows in 3 line\(s\); line 1: long_row_incomplete"
    ):
        read_parallel(path)
    with pytest.raises(TokenizerEvalError, match="no such file"):
        read_parallel(tmp_path / "missing.jsonl")
    path.write_text(
        '{"u1": 1}\n{"unit_id": "a", "lang": "en", "text": "Hi"}\n{"unit_id": "a", "lang": "en", "text": "x"}\n'
    )
    data, stats = read_parallel(path)
    assert data.texts == ["Hi"] and [q["reason"].split(":")[0] for q in stats["quarantine"]] == [
        "bad_text", "duplicate_unit_lang"
    ]  # fmt: skip
