"""Language-aware word counts, so fertility (tokens per word) compares across languages.

Method (documented choice, not a linguistic segmenter):
- Scripts written with spaces between words (Latin, Cyrillic, Greek, Arabic, Hebrew, Indic scripts, Hangul ...): a word
  is a whitespace-separated token holding at least one letter or digit (``\\w``), so stray punctuation ("—", "...")
  is not a word.
- Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar): every *letter* (Unicode ``Lo``;
  combining vowel signs and tone marks excluded) counts as one word-equivalent. For Chinese and Japanese this is the
  usual "character" unit of CJK fertility studies; for Thai/Lao/Khmer/Myanmar it over-counts words (roughly 3-5 letters
  per dictionary word) but stays stable and needs no segmentation model, which the offline machine lacks (datatrove's
  own Thai/Khmer/Lao tokenizers need pythainlp/khmer-nltk/laonlp). Fertility in those languages is therefore tokens
  per letter; premiums (tokens per semantic unit) do not depend on this choice.
Mixed text counts both: "漢字abc" is 2 + 1.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

UNSEGMENTED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
)
_WORD_RUN = re.compile(r"\S*?\w\S*")


def _char_class(predicate) -> str:
    out, start, prev = [], None, None
    for lo, hi in UNSEGMENTED_RANGES:
        for cp in range(lo, min(hi, sys.maxunicode) + 1):
            if predicate(chr(cp)):
                if start is None:
                    start = cp
                elif cp != prev + 1:
                    out.append((start, prev))
                    start = cp
                prev = cp
    if start is not None:
        out.append((start, prev))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in out)


@lru_cache(1)
def _patterns() -> tuple[re.Pattern, re.Pattern]:
    letters = re.compile(f"[{_char_class(lambda c: unicodedata.category(c) in ('Lo', 'Lm'))}]")
    any_unseg = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in UNSEGMENTED_RANGES) + "]+")
    return letters, any_unseg


def count_words(text: str) -> int:
    """Word count of one text under the method in the module docstring."""
    letters, any_unseg = _patterns()
    if not any_unseg.search(text):
        return len(_WORD_RUN.findall(text))
    n_unseg = len(letters.findall(text))
    return n_unseg + len(_WORD_RUN.findall(any_unseg.sub(" ", text)))


def count_words_batch(texts: list[str]) -> list[int]:
    """Word counts of many texts."""
    return [count_words(t) for t in texts]
