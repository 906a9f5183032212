"""The .mo parser on catalogs written in the test (both byte orders), the text filter, units across languages."""

from collections import Counter
from pathlib import Path

import pytest
from conftest import MO_HEADER, mo_bytes

from curation.ingest.mo_catalogs import (
    MoError,
    find_catalogs,
    flores_key,
    is_real_text,
    iter_domain,
    locale_of,
    parse_mo,
    unit_id,
)
from curation.ingest.readers import ReadOptions
from tokenwise.documents import Quarantined

MESSAGES = {
    "": MO_HEADER,
    "Open the selected file": "Ausgewählte Datei öffnen",
    "menu\x04Open the selected file": "Die ausgewählte Datei im Menü öffnen",
    "%d file was removed\x00%d files were removed": "%d Datei wurde entfernt\x00%d Dateien wurden entfernt",
    "%s": "%s",
    "%d: %s": "%d: %s",
    "_OK": "_OK",
    "...": "…",
    "default:LTR": "default:LTR",
    "404": "404",
    "Cannot read the configuration: %s": "Konfiguration kann nicht gelesen werden: %s",
    "Untranslated message here": "",
}


@pytest.mark.parametrize("order", ["<", ">"])
def test_parse_both_byte_orders_with_context_and_plurals(order):
    header, entries = parse_mo(mo_bytes(MESSAGES, order))
    assert header["plural-forms"].startswith("nplurals=2")
    by_key = {(e.msgctxt, e.msgid): e for e in entries}
    assert len(entries) == len(MESSAGES) - 1  # header is not an entry
    assert by_key[(None, "Open the selected file")].msgstr == ["Ausgewählte Datei öffnen"]
    assert by_key[("menu", "Open the selected file")].msgstr == ["Die ausgewählte Datei im Menü öffnen"]
    plural = by_key[(None, "%d file was removed")]
    assert plural.msgid_plural == "%d files were removed"
    assert plural.msgstr == ["%d Datei wurde entfernt", "%d Dateien wurden entfernt"]


def test_broken_catalogs_raise_moerror():
    good = mo_bytes(MESSAGES)
    with pytest.raises(MoError, match="bad magic"):
        parse_mo(b"\x00" * 40)
    with pytest.raises(MoError, match="too short"):
        parse_mo(good[:10])
    with pytest.raises(MoError, match="past the end"):
        parse_mo(good[: len(good) // 2])


def test_non_utf8_string_is_reported_per_entry():
    data = mo_bytes({"": MO_HEADER, "Good message text": "Guter Text"}).replace(b"Guter", b"Gut\xffr")
    _, entries = parse_mo(data)
    assert len(entries) == 1 and isinstance(entries[0], UnicodeDecodeError)


@pytest.mark.parametrize(
    "text,real",
    [
        ("%s", False),
        ("%d: %s", False),
        ("%(name)s -> %(value)d", False),
        ("{0} / {1}", False),
        ("_OK", False),
        ("...", False),
        ("404", False),
        ("default:LTR", False),
        ("<b>%s</b>", False),
        ("Open _File", True),
        ("%s: invalid option -- '%c'", True),
        ("Cannot read the configuration", True),
        ("ファイルを開く", True),
    ],
)
def test_is_real_text(text, real):
    assert is_real_text(text, min_letters=3, min_words=1) is real


def test_min_words_drops_single_labels():
    assert is_real_text("Cancel", 3, 1) and not is_real_text("Cancel", 3, 2)


def test_units_are_shared_across_languages_and_english_appears_once(make_mo, tmp_path):
    make_mo("de", "demo", {k: v for k, v in MESSAGES.items() if k})
    make_mo("pt_BR", "demo", {"Open the selected file": "Abrir o arquivo selecionado", "%s": "%s"}, order=">")
    make_mo("sr@latin", "demo", {"Open the selected file": "Otvori izabranu datoteku"})
    make_mo("de", "other", {"Another catalog entirely": "Ein ganz anderer Katalog"})
    (tmp_path / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "locale" / "fr" / "LC_MESSAGES" / "demo.mo").write_bytes(b"not a catalog at all, definitely")
    cats = find_catalogs(tmp_path / "locale", ["*"], ["demo"], [])
    assert [loc for loc, _ in cats["demo"]] == ["de", "fr", "pt_BR", "sr@latin"] and "other" not in cats
    skipped = Counter()
    out = list(iter_domain("demo", cats["demo"], ReadOptions(source="gettext"), 3, 1, skipped))
    bad = [b for b in out if isinstance(b, Quarantined)]
    assert [(q.reason, Path(q.file).parts[-3]) for q in bad] == [("invalid_mo", "fr")]
    rows = [r for t in out if not isinstance(t, Quarantined) for r in t.to_pylist()]
    uid = unit_id("demo", None, "Open the selected file")
    unit = {r["lang"]: r["text"] for r in rows if r["unit_id"] == uid}
    assert unit == {
        "en": "Open the selected file",
        "de": "Ausgewählte Datei öffnen",
        "pt_BR": "Abrir o arquivo selecionado",
        "sr@latin": "Otvori izabranu datoteku",
    }
    assert unit_id("demo", "menu", "Open the selected file") != uid  # msgctxt makes its own unit
    plural = [r for r in rows if r["unit_id"] == unit_id("demo", None, "%d file was removed")]
    assert {r["lang"]: r["text"] for r in plural} == {"en": "%d file was removed", "de": "%d Datei wurde entfernt"}
    assert len({r["id"] for r in rows}) == len(rows)
    assert sum(r["lang"] == "en" for r in rows) == len({r["unit_id"] for r in rows})
    assert all(r["domain"] == "ui" and r["source"] == "gettext" for r in rows)
    assert skipped["format_only"] == 7 and skipped["untranslated"] == 1


def test_locale_and_flores_keys():
    assert locale_of("/usr/share/locale/pt_BR/LC_MESSAGES/gtk30.mo") == "pt_BR"
    assert locale_of("/x/sr@latin/LC_MESSAGES/a.mo") == "sr@latin"
    keys = {loc: flores_key(loc) for loc in ("hi", "pt_BR", "zh_CN", "zh_TW", "ar", "en", "sr@latin")}
    assert keys == {"hi": "hin_Deva", "pt_BR": "por_Latn", "zh_CN": "zho_Hans", "zh_TW": "zho_Hant",
                    "ar": "arb_Arab", "en": "eng_Latn", "sr@latin": "srp_Latn"}  # fmt: skip


REAL = sorted(Path("/usr/share/locale").glob("de/LC_MESSAGES/*.mo"))


@pytest.mark.skipif(not REAL, reason="no German gettext catalogs on this machine")
def test_real_system_catalog_parses_and_yields_sentences():
    path = min(REAL, key=lambda p: p.stat().st_size if p.stat().st_size > 2000 else 1 << 60)
    header, entries = parse_mo(path.read_bytes())
    good = [e for e in entries if not isinstance(e, UnicodeDecodeError)]
    assert good and "content-type" in header
    assert any(is_real_text(e.msgid, 3, 2) for e in good)
