"""The fast word split (spaCy's English tokenizer ported in curation.signals.chunk_tokenizer) equals spaCy's own
split for every language of the demo corpus, chunk by chunk and document by document.

datatrove's Gopher/FineWeb/C4 word counts come from ``split_into_words`` (spaCy ``blank("en")`` whatever the
language), so parity is checked on text of each language the shipped demo reads: its gettext languages (the same
catalogs on this machine the demo's ``gettext`` source reads, documents of 40 strings as in the corpus), English
prose (/usr/share/doc) and Python code (the stdlib), plus generated strings built from the punctuation, quotes,
emoticons and URLs that exercise spaCy's prefix/suffix/infix rules and special cases. A chunk the port hands back
(``None``: a special case spaCy's matcher would re-merge) must be rare, and the scorer then asks spaCy itself.
"""

from __future__ import annotations

import gettext
import glob
import random
from pathlib import Path

import pytest
import yaml
from _paths import REPO

from curation.signals.chunk_tokenizer import english_chunk_tokenizer
from curation.signals.heuristics import HeuristicScorer

STRINGS_PER_LANG = 400


def demo_languages() -> list[str]:
    cfg = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    langs = [s["languages"] for s in cfg["corpus"]["sources"] if s.get("type") == "gettext"]
    return sorted({x for group in langs for x in group})


def catalog_documents(locale: str) -> list[str]:
    """Translated strings of every catalog of one locale on this machine, 40 per document (as the demo corpus)."""
    strings: list[str] = []
    for path in sorted(glob.glob(f"/usr/share/locale/{locale}/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError):
            continue
        strings += [v for k, v in catalog.items() if isinstance(k, str) and k and isinstance(v, str)]
        if len(strings) >= STRINGS_PER_LANG:
            break
    strings = strings[:STRINGS_PER_LANG]
    return ["\n".join(strings[i : i + 40]) for i in range(0, len(strings), 40)]


def english_and_code() -> list[str]:
    docs = [Path(p).read_text(encoding="utf-8", errors="replace")[:20_000]
            for p in sorted(glob.glob("/usr/lib/python3.11/json/*.py"))]  # fmt: skip
    docs += [Path(p).read_text(encoding="utf-8", errors="replace")[:20_000]
             for p in sorted(glob.glob("/usr/share/doc/*/README*"))[:40] if not p.endswith(".gz")]  # fmt: skip
    return docs


def generated_chunks(n: int = 4000, seed: int = 0) -> list[str]:
    """Random whitespace-free chunks over the characters spaCy's affix rules and special cases care about."""
    pieces = ["a", "B", "z", "1", "9", ".", ",", ":", ";", "!", "?", "'", '"', "(", ")", "[", "]", "{", "}", "-", "--",
              "...", "…", "/", "\\", "%", "$", "€", "£", "#", "@", "&", "*", "+", "=", "<", ">", "_", "~", "`", "«",
              "»", "“", "”", "‘", "’", "'s", "n't", "'ll", "ca", "n't", "Mr.", "e.g.", "U.S.", ":)", ":-)", ":(",
              "<3", "^_^", "http://", "https://", "www.", ".com", "km", "kg", "x", "é", "ß", "ü", "İ", "Ж", "ж",
              "日本", "中文", "한", "ع", "ह", "ก", "🙂", "°", "C", "F", "’s", "co.", "ltd", "vs."]  # fmt: skip
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def _spacy_split(nlp, chunks: list[str]) -> list[list[str]]:
    return [[t.text for t in doc] for doc in nlp.tokenizer.pipe(chunks)]


@pytest.fixture(scope="module")
def nlp():
    import spacy

    return spacy.blank("en")


@pytest.fixture(scope="module")
def port():
    return english_chunk_tokenizer()


@pytest.mark.parametrize("lang", ["en+code", *demo_languages()])
def test_port_equals_spacy_on_every_chunk_of_each_language(lang, nlp, port):
    docs = english_and_code() if lang == "en+code" else catalog_documents(lang)
    assert docs, f"no text for {lang} on this machine"
    chunks = sorted({c for d in docs for c in d.split()})
    want = _spacy_split(nlp, chunks)
    handed_back, diffs = 0, []
    for c, w in zip(chunks, want, strict=True):
        got = port.split(c)
        if got is None:
            handed_back += 1
        elif list(got) != w:
            diffs.append((c, list(got), w))
    assert diffs == [], diffs[:10]
    assert handed_back <= max(3, len(chunks) // 100), f"{lang}: {handed_back} of {len(chunks)} chunks left to spaCy"


def test_port_equals_spacy_on_generated_chunks(nlp, port):
    chunks = generated_chunks()
    diffs = [(c, list(g), w) for c, w in zip(chunks, _spacy_split(nlp, chunks), strict=True)
             if (g := port.split(c)) is not None and list(g) != w]  # fmt: skip
    assert diffs == [], diffs[:10]


def test_scorer_words_equal_datatrove_split_per_language():
    from datatrove.utils.text import split_into_words

    scorer = HeuristicScorer()
    for lang in demo_languages():
        for doc in catalog_documents(lang)[:3]:
            assert scorer.words(doc) == split_into_words(doc), lang
    assert scorer.spacy_chunks < len(scorer.cache) // 20 + 5, "the port should split almost every chunk itself"
