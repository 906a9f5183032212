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
from curation.signals.lid import (
    LanguageIdentifier,
    compatible,
    latin_marks,
    lid_text,
    orthography_ok,
    script_evidence,
    script_of,
)

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
    # script evidence alone changes a label only where the model's label contradicts the text's script
    script_only = LanguageIdentifier(orthography=False, clean=False).identify(texts)
    for text, mine, model in zip(texts, script_only.labels, script_only.model_labels, strict=True):
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


# ---------------------------------------------------------------- short strings, script evidence (issue 22)

DEMO_LABELS = "en de fr es ru ja zh ko ar hi bn ta te my th".split()
DEMO_PRIOR = {"en": 0.8}  # configs/demo.yaml score.lid_prior
SHORT_NON_LATIN = {"ru": "ru", "ja": "ja", "zh_CN": "zh", "ko": "ko", "ar": "ar", "hi": "hi", "bn": "bn", "ta": "ta",
                   "te": "te", "my": "my", "th": "th"}  # fmt: skip
SHORT_LATIN = {"de": "de", "fr": "fr", "es": "es"}


def short_strings(locale: str, lo: int = 10, hi: int = 40, cap: int = 400) -> list[str]:
    """Translated UI strings of 2+ words with ``lo``..``hi`` letters (the demo corpus keeps 2+ word strings); for a
    non-Latin language only strings whose dominant script is not Latin (key names such as "AudioMute" left
    untranslated in a Tamil catalog are English text, not Tamil)."""
    out = set()
    for path in sorted(glob.glob(f"/usr/share/locale/{locale}/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError):
            continue
        for k, v in catalog.items():
            if isinstance(k, str) and isinstance(v, str) and k and v != k:
                text = PLACEHOLDERS.sub(" ", v).strip()
                if lo <= sum(c.isalpha() for c in text) < hi and len(text.split()) >= 2:
                    if locale in SHORT_LATIN or script_of(text) != "Latn":
                        out.add(text)
    return sorted(out)[:cap]


@pytest.fixture(scope="module")
def short_accuracy(lid) -> dict[str, tuple[int, float, float, float, float]]:
    """locale -> (strings, model alone, with script evidence, + the demo's lid_labels, + its lid_prior)."""
    script_only = LanguageIdentifier(orthography=False, clean=False)
    restricted = LanguageIdentifier(labels=DEMO_LABELS, orthography=False, clean=False)
    demo = LanguageIdentifier(labels=DEMO_LABELS, prior=DEMO_PRIOR)
    table = {}
    for locale, want in {**SHORT_NON_LATIN, **SHORT_LATIN}.items():
        texts = short_strings(locale)
        if len(texts) < 50:
            continue
        r, rr, rd = script_only.identify(texts), restricted.identify(texts), demo.identify(texts)
        table[locale] = (len(texts), *(sum(x == want for x in labels) / len(texts)
                                       for labels in (r.model_labels, r.labels, rr.labels, rd.labels)))  # fmt: skip
    print("\nLID on short strings (locale: n, model alone, + script evidence, + lid_labels, demo's LID):")
    for locale, (n, a, b, c, d) in table.items():
        print(f"  {locale:6s} n={n:4d} model={a:.3f} script={b:.3f} labels={c:.3f} demo={d:.3f}")
    return table


def test_short_strings_script_evidence_reaches_95_percent_where_the_script_decides(short_accuracy):
    non_latin = {k: v for k, v in short_accuracy.items() if k in SHORT_NON_LATIN}
    assert len(non_latin) >= 6, f"too few languages with translations on this machine: {sorted(short_accuracy)}"
    assert {k: round(v[2], 3) for k, v in non_latin.items() if v[2] < 0.95} == {}
    assert all(v[2] >= v[1] - 0.005 for v in short_accuracy.values()), "script evidence made a language worse"
    if "zh_CN" in non_latin:  # Han without kana is not Japanese: the model alone sends ~9% of these to ja/wuu/yue
        assert non_latin["zh_CN"][2] >= non_latin["zh_CN"][1] + 0.03


def test_short_latin_strings_gain_from_the_corpus_label_prior(short_accuracy):
    """Latin-script neighbours are not told apart by script; the corpus's label set (``score.lid_labels``) removes
    pt/ca/oc/it from the candidates. Measured here: de 0.932, fr 0.927, es 0.895 (model alone 0.917/0.922/0.807);
    the rest are mostly strings that are English words in a translated catalog."""
    latin = {k: v for k, v in short_accuracy.items() if k in SHORT_LATIN}
    assert latin, "no Latin-script catalogs on this machine"
    assert all(v[3] >= v[2] for v in latin.values())
    assert all(v[3] >= 0.85 for v in latin.values()), latin


def test_short_latin_strings_gain_from_orthography_and_the_prior(short_accuracy):
    """The demo's LID (orthography, bare short strings, lid_labels, lid_prior) on the short de/fr/es strings, which
    lid.176 alone sends to en. Measured here: de 0.958, fr 0.958, es 0.945 (lid_labels alone 0.932/0.927/0.895); this
    set keeps strings that are English names in a translated catalog, which bench/lid.py's held-out set cleans out
    (its figures: bench/results/lid.json)."""
    latin = {k: round(v[4], 3) for k, v in short_accuracy.items() if k in SHORT_LATIN}
    assert latin, "no Latin-script catalogs on this machine"
    assert {k: v for k, v in latin.items() if v < 0.94} == {}
    assert all(v[4] >= v[3] + 0.02 for k, v in short_accuracy.items() if k in SHORT_LATIN)
    assert all(v[4] >= v[1] for k, v in short_accuracy.items()), "the demo's LID made a language worse than the model"


def test_orthography_contradicts_letters_a_language_never_writes():
    def ok(label: str, text: str) -> bool:
        return orthography_ok(label, *latin_marks(text))

    assert not ok("de", "¿Desea continuar?") and not ok("fr", "Año nuevo") and ok("es", "¿Desea continuar?")
    assert ok("de", "Größe ändern") and not ok("fr", "Größe ändern") and not ok("en", "Größe ändern")
    assert not ok("es", "Cœur de l'œuvre") and not ok("es", "Ça va très bien") and ok("fr", "Ça va très bien")
    assert ok("xx", "Größe") and ok("en", "plain ASCII text")  # unknown label / no marks: no evidence
    # typography of short strings: French spaces before ? ! : ; and after «, German »…« and „…“
    assert not ok("en", "Voulez-vous continuer ?") and ok("fr", "Voulez-vous continuer ?")
    assert not ok("es", "Fichier « %s » introuvable") and ok("fr", "Fichier « %s » introuvable")
    assert not ok("fr", "Datei »%s« fehlt") and not ok("en", "Datei „%s“ fehlt") and ok("de", "Datei »%s« fehlt")
    long_english = "This README was written by Sébastien and explains the build in plain English words. " * 3
    assert ok("en", long_english)  # one name among hundreds of letters is not evidence


def test_short_strings_are_read_without_placeholders_options_and_identifiers():
    assert lid_text("%s: »%s« konnte nicht geladen werden: %d") == "konnte nicht geladen werden"
    assert lid_text("utiliser -mcpu=arm250 pour _Ouvrir {name}") == "utiliser pour Ouvrir"
    assert lid_text("%s %d") == "%s %d"  # nothing left: the text as it is
    long = "word %s " * 40
    assert lid_text(long) == long


def test_prior_sways_short_strings_only(lid):
    short, long = "Error interno", "El archivo no se pudo abrir porque el disco está lleno y no queda espacio libre"
    plain = LanguageIdentifier(labels=DEMO_LABELS)
    weighted = LanguageIdentifier(labels=DEMO_LABELS, prior={"en": 0.05})
    assert plain.predict([short])[0] == ["en"] and weighted.predict([short])[0] == ["es"]
    assert plain.identify([long]).scores == weighted.identify([long]).scores
