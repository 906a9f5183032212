"""Gettext locale codes (``de``, ``pt_BR``, ``sr@latin``) to FLORES-200 style keys (``deu_Latn``) and language names.

FLORES keys are ``<ISO 639-3>_<ISO 15924 script>`` with the macro-language choices FLORES-200 made (``arb_Arab`` for
Arabic, ``zsm_Latn`` for Malay, ``pes_Arab`` for Persian). English is ``eng_Latn``. A locale not in the table gets
``<code>_<script guessed from text or Zyyy>`` so nothing is dropped; ``language_info`` says when a key was guessed.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

ENGLISH_KEY = "eng_Latn"

# locale language code -> (FLORES ISO 639-3, default script, English name)
_LANGS: dict[str, tuple[str, str, str]] = {
    "af": ("afr", "Latn", "Afrikaans"), "am": ("amh", "Ethi", "Amharic"), "ar": ("arb", "Arab", "Arabic"),
    "as": ("asm", "Beng", "Assamese"), "ast": ("ast", "Latn", "Asturian"), "az": ("azj", "Latn", "Azerbaijani"),
    "ba": ("bak", "Cyrl", "Bashkir"), "be": ("bel", "Cyrl", "Belarusian"), "bg": ("bul", "Cyrl", "Bulgarian"),
    "bn": ("ben", "Beng", "Bengali"), "bo": ("bod", "Tibt", "Tibetan"), "br": ("bre", "Latn", "Breton"),
    "bs": ("bos", "Latn", "Bosnian"), "ca": ("cat", "Latn", "Catalan"), "ckb": ("ckb", "Arab", "Central Kurdish"),
    "cs": ("ces", "Latn", "Czech"), "cy": ("cym", "Latn", "Welsh"), "da": ("dan", "Latn", "Danish"),
    "de": ("deu", "Latn", "German"), "dz": ("dzo", "Tibt", "Dzongkha"), "el": ("ell", "Grek", "Greek"),
    "en": ("eng", "Latn", "English"), "eo": ("epo", "Latn", "Esperanto"), "es": ("spa", "Latn", "Spanish"),
    "et": ("est", "Latn", "Estonian"), "eu": ("eus", "Latn", "Basque"), "fa": ("pes", "Arab", "Persian"),
    "fi": ("fin", "Latn", "Finnish"), "fil": ("fil", "Latn", "Filipino"), "fo": ("fao", "Latn", "Faroese"),
    "fr": ("fra", "Latn", "French"), "fur": ("fur", "Latn", "Friulian"), "fy": ("fry", "Latn", "Western Frisian"),
    "ga": ("gle", "Latn", "Irish"), "gd": ("gla", "Latn", "Scottish Gaelic"), "gl": ("glg", "Latn", "Galician"),
    "gu": ("guj", "Gujr", "Gujarati"), "ha": ("hau", "Latn", "Hausa"), "he": ("heb", "Hebr", "Hebrew"),
    "hi": ("hin", "Deva", "Hindi"), "hr": ("hrv", "Latn", "Croatian"), "ht": ("hat", "Latn", "Haitian Creole"),
    "hu": ("hun", "Latn", "Hungarian"), "hy": ("hye", "Armn", "Armenian"), "ia": ("ina", "Latn", "Interlingua"),
    "id": ("ind", "Latn", "Indonesian"), "ig": ("ibo", "Latn", "Igbo"), "is": ("isl", "Latn", "Icelandic"),
    "it": ("ita", "Latn", "Italian"), "ja": ("jpn", "Jpan", "Japanese"), "ka": ("kat", "Geor", "Georgian"),
    "kab": ("kab", "Latn", "Kabyle"), "kk": ("kaz", "Cyrl", "Kazakh"), "km": ("khm", "Khmr", "Khmer"),
    "kmr": ("kmr", "Latn", "Northern Kurdish"), "kn": ("kan", "Knda", "Kannada"), "ko": ("kor", "Hang", "Korean"),
    "kok": ("gom", "Deva", "Konkani"), "ku": ("kmr", "Latn", "Kurdish"), "ky": ("kir", "Cyrl", "Kyrgyz"),
    "lb": ("ltz", "Latn", "Luxembourgish"), "lg": ("lug", "Latn", "Ganda"), "lo": ("lao", "Laoo", "Lao"),
    "lt": ("lit", "Latn", "Lithuanian"), "lv": ("lvs", "Latn", "Latvian"), "mai": ("mai", "Deva", "Maithili"),
    "mg": ("plt", "Latn", "Malagasy"), "mi": ("mri", "Latn", "Maori"), "mk": ("mkd", "Cyrl", "Macedonian"),
    "ml": ("mal", "Mlym", "Malayalam"), "mn": ("khk", "Cyrl", "Mongolian"), "mr": ("mar", "Deva", "Marathi"),
    "ms": ("zsm", "Latn", "Malay"), "mt": ("mlt", "Latn", "Maltese"), "my": ("mya", "Mymr", "Burmese"),
    "nb": ("nob", "Latn", "Norwegian Bokmål"), "ne": ("npi", "Deva", "Nepali"), "nl": ("nld", "Latn", "Dutch"),
    "nn": ("nno", "Latn", "Norwegian Nynorsk"), "no": ("nob", "Latn", "Norwegian"), "nso": ("nso", "Latn", "Pedi"),
    "oc": ("oci", "Latn", "Occitan"), "or": ("ory", "Orya", "Odia"), "pa": ("pan", "Guru", "Punjabi"),
    "pl": ("pol", "Latn", "Polish"), "ps": ("pbt", "Arab", "Pashto"), "pt": ("por", "Latn", "Portuguese"),
    "qu": ("quy", "Latn", "Quechua"), "ro": ("ron", "Latn", "Romanian"), "ru": ("rus", "Cyrl", "Russian"),
    "rw": ("kin", "Latn", "Kinyarwanda"), "sc": ("srd", "Latn", "Sardinian"), "sd": ("snd", "Arab", "Sindhi"),
    "si": ("sin", "Sinh", "Sinhala"), "sk": ("slk", "Latn", "Slovak"), "sl": ("slv", "Latn", "Slovenian"),
    "so": ("som", "Latn", "Somali"), "sq": ("als", "Latn", "Albanian"), "sr": ("srp", "Cyrl", "Serbian"),
    "sv": ("swe", "Latn", "Swedish"), "sw": ("swh", "Latn", "Swahili"), "ta": ("tam", "Taml", "Tamil"),
    "te": ("tel", "Telu", "Telugu"), "tg": ("tgk", "Cyrl", "Tajik"), "th": ("tha", "Thai", "Thai"),
    "ti": ("tir", "Ethi", "Tigrinya"), "tk": ("tuk", "Latn", "Turkmen"), "tl": ("tgl", "Latn", "Tagalog"),
    "tr": ("tur", "Latn", "Turkish"), "tt": ("tat", "Cyrl", "Tatar"), "ug": ("uig", "Arab", "Uyghur"),
    "uk": ("ukr", "Cyrl", "Ukrainian"), "ur": ("urd", "Arab", "Urdu"), "uz": ("uzn", "Latn", "Uzbek"),
    "vi": ("vie", "Latn", "Vietnamese"), "wa": ("wln", "Latn", "Walloon"), "wo": ("wol", "Latn", "Wolof"),
    "xh": ("xho", "Latn", "Xhosa"), "yi": ("ydd", "Hebr", "Yiddish"), "yo": ("yor", "Latn", "Yoruba"),
    "zh": ("zho", "Hans", "Chinese"), "zu": ("zul", "Latn", "Zulu"),
}  # fmt: skip

# gettext modifiers and regions that change the script
_MODIFIER_SCRIPT = {"latin": "Latn", "latn": "Latn", "cyrillic": "Cyrl", "iqtelif": "Latn", "ije": "Cyrl"}
_REGION_SCRIPT = {("zh", "TW"): "Hant", ("zh", "HK"): "Hant", ("zh", "MO"): "Hant", ("pa", "PK"): "Arab",
                  ("az", "IR"): "Arab", ("zh", "Hant"): "Hant", ("zh", "Hans"): "Hans"}  # fmt: skip

# Unicode character-name prefix -> ISO 15924 script, for guessing the script of an unknown locale from its text
_NAME_SCRIPT = {"LATIN": "Latn", "CYRILLIC": "Cyrl", "ARABIC": "Arab", "DEVANAGARI": "Deva", "BENGALI": "Beng",
                "TAMIL": "Taml", "TELUGU": "Telu", "GREEK": "Grek", "HEBREW": "Hebr", "THAI": "Thai",
                "MYANMAR": "Mymr", "ETHIOPIC": "Ethi", "GEORGIAN": "Geor", "ARMENIAN": "Armn", "HANGUL": "Hang",
                "CJK": "Hani", "HIRAGANA": "Jpan", "KATAKANA": "Jpan", "KHMER": "Khmr", "GUJARATI": "Gujr",
                "GURMUKHI": "Guru", "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh", "TIBETAN": "Tibt",
                "CHEROKEE": "Cher", "THAANA": "Thaa", "ORIYA": "Orya", "LAO": "Laoo"}  # fmt: skip


def parse_locale(locale: str) -> tuple[str, str | None, str | None]:
    """Split ``ll_CC.charset@modifier`` into (language, region or script subtag, modifier)."""
    base, _, modifier = locale.partition("@")
    base = base.split(".", 1)[0]
    lang, _, region = base.replace("-", "_").partition("_")
    return lang.lower(), region or None, modifier.lower() or None


def guess_script(text: str) -> str:
    """The ISO 15924 script most letters of ``text`` belong to (``Zyyy`` when none is recognised)."""
    counts: Counter[str] = Counter()
    for ch in text[:2000]:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        script = next((s for prefix, s in _NAME_SCRIPT.items() if name.startswith(prefix)), None)
        if script:
            counts[script] += 1
    return counts.most_common(1)[0][0] if counts else "Zyyy"


def flores_key(locale: str, sample_text: str | None = None) -> str:
    """FLORES-200 key of a locale: ``hi``->``hin_Deva``, ``zh_CN``->``zho_Hans``, ``sr@latin``->``srp_Latn``."""
    lang, region, modifier = parse_locale(locale)
    iso3, script, _ = _LANGS.get(lang, (lang, None, None))
    script = _MODIFIER_SCRIPT.get(modifier or "", None) or _REGION_SCRIPT.get((lang, region or ""), script)
    if script is None:
        script = guess_script(sample_text) if sample_text else "Zyyy"
    return f"{iso3}_{script}"


def language_info(locale: str, sample_text: str | None = None) -> dict[str, str | bool]:
    """Key, ISO 639-3 code, script, English name and the source locale of one language (``known`` False = guessed)."""
    lang, region, _ = parse_locale(locale)
    key = flores_key(locale, sample_text)
    iso3, script = key.split("_", 1)
    name = _LANGS[lang][2] if lang in _LANGS else lang
    if region and lang in _LANGS and region not in ("Hans", "Hant"):
        name = f"{name} ({region})"
    return {"key": key, "locale": locale, "iso639_3": iso3, "script": script, "name": name, "known": lang in _LANGS}


def unique_keys(locales: list[str]) -> dict[str, str]:
    """Map each locale to a FLORES key, suffixing regional variants that would collide (``pt``, ``pt_BR`` ->
    ``por_Latn``, ``por_Latn_BR``); the plain locale, or the first in sorted order, keeps the bare key."""
    by_key: dict[str, list[str]] = {}
    for loc in sorted(set(locales)):
        by_key.setdefault(flores_key(loc), []).append(loc)
    out: dict[str, str] = {}
    for key, locs in by_key.items():
        plain = min(locs, key=lambda loc: (parse_locale(loc)[1:] != (None, None), loc))
        for loc in locs:
            _, region, modifier = parse_locale(loc)
            out[loc] = key if loc == plain else f"{key}_{region or modifier}"
    return out


def is_english(locale: str | None) -> bool:
    """True only for plain English (``en``); ``en_GB`` catalogs are translations into a variant of English."""
    return locale == "en"


def locale_of_key(code: str) -> str:
    """The locale a FLORES key stands for (``mya_Mymr`` -> ``my``, ``eng_Latn`` -> ``en``); anything else (a locale
    already, or a key no known locale maps to) is returned unchanged."""
    if len(code) < 8 or code[3] != "_":
        return code
    by_key = {}
    for loc in sorted(_LANGS):
        by_key.setdefault(flores_key(loc), loc)
    return by_key.get(code, code)
