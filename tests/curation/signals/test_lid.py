"""LID on known-language gettext translations (real, human-translated UI strings on this machine).

Fairness threshold: a string counts when it has >= 40 letters after removing printf/brace placeholders and markup
(short labels like "Cancel" carry too little signal for any character n-gram model). Languages asserted at >= 95%
are ones lid.176 covers well and that have no near-identical sibling in its label set; the confusable ones (pt/es/gl,
da/no, id/ms, bg/ru/mk, ca/es, sv/da) are reported, not asserted. Japanese and Korean UI strings often embed English
command and option names, which fastText then labels ``en``; they are asserted at >= 90% (measured here: ja 0.953,
ko 0.947). Run with -s to see the per-language table.
"""

from __future__ import annotations

import gettext
import glob
import re

import pytest

from curation.signals import datatrove_reference as ref
from curation.signals.lid import LanguageIdentifier, compatible, script_evidence, script_of

PLACEHOLDERS = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|\{[^}]*\}|<[^>]+>|&\w+;|\\[nt]")
ASSERTED = {
    "de": "de",
    "fr": "fr",
    "ru": "ru",
    "pl": "pl",
    "tr": "tr",
    "ar": "ar",
    "hi": "hi",
    "el": "el",
    "he": "he",
    "fa": "fa",
    "th": "th",
    "uk": "uk",
    "ja": "ja",
    "ko": "ko",
    "cs": "cs",
}
REPORTED = {"es": "es", "pt_BR": "pt", "zh_CN": "zh", "da": "da", "bg": "bg", "id": "id", "sv": "sv"}
MIXED_SCRIPT_UI = {"ja", "ko"}
MIN_LETTERS, PER_LANG = 40, 150


def translations(locale: str) -> list[str]:
    """Translated strings (not copies of the English msgid) of every catalog of one locale, sorted, capped."""
    out = set()
    for path in sorted(glob.glob(f"/usr/share/locale/{locale}/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError):
            continue  # a few catalogs are not UTF-8
        for k, v in catalog.items():
            if isinstance(k, str) and isinstance(v, str) and k and v != k:
                text = PLACEHOLDERS.sub(" ", v)
                if sum(c.isalpha() for c in text) >= MIN_LETTERS:
                    out.add(text)
    return sorted(out)[:PER_LANG]


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def accuracy(lid) -> dict[str, tuple[int, float]]:
    table = {}
    for locale, want in {**ASSERTED, **REPORTED}.items():
        texts = translations(locale)
        if len(texts) < 30:
            continue
        labels, _, _ = lid.predict(texts)
        table[locale] = (len(texts), sum(label == want for label in labels) / len(labels))
    print("\nLID accuracy on .mo translations (locale: n, accuracy):")
    for locale, (n, acc) in table.items():
        print(f"  {locale:6s} n={n:4d} acc={acc:.3f}{'' if locale in ASSERTED else '  (reported only)'}")
    return table


def test_accuracy_on_well_covered_languages(accuracy):
    asserted = {k: v for k, v in accuracy.items() if k in ASSERTED}
    assert len(asserted) >= 8, f"too few languages with translations on this machine: {sorted(accuracy)}"
    low = {k: round(acc, 3) for k, (_, acc) in asserted.items() if acc < (0.90 if k in MIXED_SCRIPT_UI else 0.95)}
    assert low == {}


def test_scores_equal_datatrove_ft176(lid):
    texts = translations("de")[:20] + translations("ja")[:20] + ["plain English text about a file that was not found"]
    ours = lid.identify(texts)
    theirs = ref.run_lid(ref.make_lid(lid.path), texts)
    assert ours.model_labels == [lang for lang, _ in theirs]  # the model's own label = datatrove's LID step
    assert ours.model_scores == pytest.approx([score for _, score in theirs], abs=1e-6)
    # script evidence changes a label only where the model's label contradicts the text's script
    for text, mine, model in zip(texts, ours.labels, ours.model_labels, strict=True):
        assert mine == model or not compatible(model, script_evidence(text)), (text, mine, model)


def test_script_from_unicode_ranges():
    assert script_of("Datei nicht gefunden") == "Latn"
    assert script_of("Файл не найден") == "Cyrl"
    assert script_of("फ़ाइल नहीं मिली") == "Deva"
    assert script_of("ファイルが見つかりません") == "Jpan"
    assert script_of("找不到文件") == "Hani"
    assert script_of("لم يتم العثور على الملف") == "Arab"
    assert script_of("파일을 찾을 수 없습니다") == "Hang"
    assert script_of("ไม่พบไฟล์") == "Thai"
    assert script_of("12345 ... !!") == "Zyyy"


def test_other_local_model_path_is_used(tmp_path):
    with pytest.raises(FileNotFoundError, match="lid_model"):
        LanguageIdentifier(tmp_path / "missing.bin")
