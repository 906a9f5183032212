"""TPSU and premiums on real gettext translations, checked against hand counts with tiktoken."""

from __future__ import annotations

import json
from statistics import median

import pyarrow as pa
import pytest
from _curation_fixtures import parallel_docs, signal_rows, stdlib_docs

from curation.plans.balance import imbalance
from curation.plans.tpsu import tpsu_report
from tokenwise.tokenizer_specs import load_tokenizer


@pytest.fixture(scope="module")
def docs():
    return stdlib_docs(("textwrap.py", "bisect.py")) + parallel_docs(limit=25)


@pytest.fixture(scope="module")
def report(docs):
    return tpsu_report(pa.Table.from_pylist(signal_rows(docs)), n_boot=200)


def _row(report, lang, tok="cl100k_base", domain="all"):
    return next(r for r in report["premium"] if (r["lang"], r["tokenizer"], r["domain"]) == (lang, tok, domain))


def test_premium_by_hand_on_a_few_units(docs):
    enc = load_tokenizer("tiktoken:cl100k_base")
    units = sorted({d["unit_id"] for d in docs if d["unit_id"]})[:4]
    few = [d for d in docs if d["unit_id"] in units]
    rep = tpsu_report(pa.Table.from_pylist(signal_rows(few)), tokenizers=["cl100k_base"], n_boot=50)
    text = {(d["lang"], d["unit_id"]): d["text"] for d in few}
    for lang in ("de", "hi", "ja"):
        t_l = [len(enc.encode(text[(lang, u)])) for u in units]
        t_en = [len(enc.encode(text[("en", u)])) for u in units]
        row = _row(rep, lang)
        assert row["n_units"] == 4
        assert row["tokens"] == sum(t_l) and row["tokens_en"] == sum(t_en)
        assert row["premium"] == pytest.approx(sum(t_l) / sum(t_en))
        assert row["premium_median_unit"] == pytest.approx(median(a / b for a, b in zip(t_l, t_en, strict=True)))
        assert row["tpsu"] == pytest.approx(sum(t_l) / 4)


def test_premium_ci_brackets_estimate_and_english_is_one(report):
    assert _row(report, "en")["premium"] == 1.0
    for lang in ("de", "fr", "ru", "hi"):
        r = _row(report, lang)
        assert r["premium_ci_low"] <= r["premium"] <= r["premium_ci_high"]
    assert _row(report, "hi")["premium"] > _row(report, "fr")["premium"]  # Devanagari costs more under cl100k
    assert report["premium_matrix"]["bpe2k"]["ru"] == _row(report, "ru", "bpe2k")["premium"]


def test_domain_rows_and_monolingual_estimate(report, docs):
    assert _row(report, "de", domain="ui")["premium"] == _row(report, "de")["premium"]  # only ui units here
    cal = report["calibration"]["en"]
    en_bytes = [len(d["text"].encode()) for d in docs if d["lang"] == "en" and d["unit_id"]]
    assert cal["bytes_per_unit"] == pytest.approx(sum(en_bytes) / len(en_bytes))
    mono = next(
        r for r in report["monolingual"] if (r["lang"], r["domain"], r["tokenizer"]) == ("en", "code", "cl100k_base")
    )
    code_bytes = sum(len(d["text"].encode()) for d in docs if d["domain"] == "code")
    assert mono["estimate"] is True and mono["bytes"] == code_bytes
    assert mono["est_units"] == pytest.approx(code_bytes / cal["bytes_per_unit"])
    assert mono["est_units_low"] <= mono["est_units"] <= mono["est_units_high"]
    assert mono["tpsu_est"] == pytest.approx(mono["tokens"] / mono["est_units"])
    json.dumps(report)  # JSON-serialisable as written to tpsu.json


def test_imbalance_measures():
    even = imbalance({"de": 5, "fr": 5, "hi": 5, "ja": 5})
    assert even["entropy_norm"] == pytest.approx(1.0) and even["effective_languages"] == pytest.approx(4.0)
    skew = imbalance({"en": 97, "de": 1, "fr": 1, "hi": 1})
    assert skew["top"] == "en" and skew["top_share"] == pytest.approx(0.97) and skew["entropy_norm"] < 0.2
