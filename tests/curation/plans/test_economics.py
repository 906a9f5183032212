"""Language economics (native vs translate-to-English-first) on real parallel gettext strings."""

from __future__ import annotations

import pyarrow as pa
import pytest
from _curation_fixtures import parallel_docs, signal_rows

from curation.plans.economics import economics_report
from tokenwise.tokenizer_specs import load_tokenizer


@pytest.fixture(scope="module")
def docs():
    return parallel_docs(limit=15)


def test_native_and_translate_costs_by_hand(docs):
    enc = load_tokenizer("tiktoken:cl100k_base")
    rep = economics_report(pa.Table.from_pylist(signal_rows(docs)), ["cl100k_base"], response_ratio=1.0)
    t_en = sum(len(enc.encode(d["text"])) for d in docs if d["lang"] == "en")
    for lang in ("de", "hi"):
        t_l = sum(len(enc.encode(d["text"])) for d in docs if d["lang"] == lang)
        row = next(r for r in rep["rows"] if (r["lang"], r["tokenizer"]) == (lang, "cl100k_base"))
        assert (row["tokens"], row["tokens_en"]) == (t_l, t_en)
        assert row["native_tokens"] == 2 * t_l
        assert row["translate_tokens"] == t_l + t_en + 2 * t_en


@pytest.mark.parametrize("r", [0.25, 1.0, 3.0])
def test_cheaper_side_flips_at_break_even_premium(docs, r):
    rep = economics_report(pa.Table.from_pylist(signal_rows(docs)), ["cl100k_base", "bpe2k"], response_ratio=r)
    assert rep["break_even_premium"] == pytest.approx((2 + r) / r)
    for row in rep["rows"]:
        expect = "translate" if row["premium"] > rep["break_even_premium"] else "native"
        assert row["cheaper"] == expect, row
    if r == 3.0:  # break-even 5/3: real premiums fall on both sides, so the flip is exercised
        assert {row["cheaper"] for row in rep["rows"]} == {"native", "translate"}
