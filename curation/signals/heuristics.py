"""Fast one-pass values of datatrove's quality rules (Gopher quality + repetition, C4, FineWeb), and their decisions.

datatrove's filters are the reference (:mod:`curation.signals.datatrove_reference`); this module reproduces their exact
semantics but computes *every* rule value per document instead of stopping at the first failing rule, so thresholds can
be changed later without rescoring.

How it stays exact and fast:
- Words are spaCy ``blank("en")`` tokens, as datatrove's default word tokenizer produces them (``split_into_words``).
  spaCy tokenizes each whitespace-delimited chunk independently (whitespace runs other than a single space become
  whitespace tokens, which datatrove strips away), so the tokens of a document are the concatenation of the tokens of
  its ``str.split()`` chunks. We tokenize each *distinct* chunk once with spaCy and memoise it with everything the
  rules need (non-symbol / alpha flags, lengths, stop words, the sentencizer's state transition); real text is
  Zipfian, so almost every chunk is a cache hit and spaCy runs on a small fraction of the bytes.
- C4 counts sentences with spaCy's sentencizer on each kept line. The sentencizer is a two-state machine over tokens
  (``seen_period``); each chunk stores its transition for both entry states, and a gap other than one space adds a
  whitespace token (not punctuation), exactly as spaCy does.
- n-gram statistics: short documents (< 400 words) use datatrove's string n-grams through C-level ``zip``/``map``/
  ``Counter``; longer ones hash every window of words in O(words) numpy work (a polynomial hash of the joined string
  modulo 2**64, composed from per-token hashes, so equal strings always get equal keys and distinct strings collide
  with probability ~2**-64), then ``np.unique`` finds the top n-gram and the repeat positions, and the sequential
  ``find_all_duplicate`` walk visits only positions whose n-gram occurred before.

Line-level C4 knobs (terminal punctuation, 3 words per line, 1000-char words, javascript and policy lines, citation
removal) are fixed at datatrove's defaults because they change which lines count; document-level thresholds are free.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
_STOP_BIT = {w: 1 << i for i, w in enumerate(sorted(STOP_WORDS))}
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

CITATION_REGEX = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
C4_POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_PARAGRAPH_RE = re.compile(r"\n{2,}")
_LINE_RE = re.compile("\n+")
_GAP_RE = re.compile(r"(\s+)")


@dataclass(frozen=True)
class Rule:
    """One datatrove rule: drop when ``column`` is ``op`` (``lt``/``gt``) the threshold; ``reason`` is datatrove's.

    ``zero_off``: datatrove tests the threshold's truthiness (``if self.min_doc_words and ...``), so 0 turns the rule
    off; elsewhere (n-gram, FineWeb rules) 0 is a real threshold. ``None`` always turns a rule off here.
    """

    filter: str
    reason: str
    column: str
    op: str
    default: float | None
    zero_off: bool = False


# In datatrove's order within each filter (the first failing rule gives the reason). Special rules (empty docs, C4
# lorem/curly line order) are handled in :func:`decide`.
RULES: tuple[Rule, ...] = (
    Rule("gopher_quality", "gopher_short_doc", "gopher_n_non_symbol_words", "lt", 50, True),
    Rule("gopher_quality", "gopher_long_doc", "gopher_n_non_symbol_words", "gt", 100000, True),
    Rule("gopher_quality", "gopher_below_avg_threshold", "gopher_mean_word_length", "lt", 3, True),
    Rule("gopher_quality", "gopher_above_avg_threshold", "gopher_mean_word_length", "gt", 10, True),
    Rule("gopher_quality", "gopher_too_many_hashes", "gopher_hash_ratio", "gt", 0.1, True),
    Rule("gopher_quality", "gopher_too_many_ellipsis", "gopher_ellipsis_ratio", "gt", 0.1, True),
    Rule("gopher_quality", "gopher_too_many_bullets", "gopher_bullet_lines_ratio", "gt", 0.9, True),
    Rule("gopher_quality", "gopher_too_many_end_ellipsis", "gopher_end_ellipsis_lines_ratio", "gt", 0.3, True),
    Rule("gopher_quality", "gopher_below_alpha_threshold", "gopher_alpha_words_ratio", "lt", 0.8, True),
    Rule("gopher_quality", "gopher_enough_stop_words", "gopher_stop_words", "lt", 2, True),
    Rule("gopher_repetition", "dup_para_frac", "gopher_dup_para_frac", "gt", 0.3, True),
    Rule("gopher_repetition", "dup_para_char_frac", "gopher_dup_para_char_frac", "gt", 0.2, True),
    Rule("gopher_repetition", "dup_line_frac", "gopher_dup_line_frac", "gt", 0.3, True),
    Rule("gopher_repetition", "dup_line_char_frac", "gopher_dup_line_char_frac", "gt", 0.2, True),
    Rule("gopher_repetition", "top_2_gram", "gopher_top_2_gram_frac", "gt", 0.2),
    Rule("gopher_repetition", "top_3_gram", "gopher_top_3_gram_frac", "gt", 0.18),
    Rule("gopher_repetition", "top_4_gram", "gopher_top_4_gram_frac", "gt", 0.16),
    Rule("gopher_repetition", "duplicated_5_n_grams", "gopher_dup_5_gram_frac", "gt", 0.15),
    Rule("gopher_repetition", "duplicated_6_n_grams", "gopher_dup_6_gram_frac", "gt", 0.14),
    Rule("gopher_repetition", "duplicated_7_n_grams", "gopher_dup_7_gram_frac", "gt", 0.13),
    Rule("gopher_repetition", "duplicated_8_n_grams", "gopher_dup_8_gram_frac", "gt", 0.12),
    Rule("gopher_repetition", "duplicated_9_n_grams", "gopher_dup_9_gram_frac", "gt", 0.11),
    Rule("gopher_repetition", "duplicated_10_n_grams", "gopher_dup_10_gram_frac", "gt", 0.10),
    Rule("c4", "too_few_sentences", "c4_sentences", "lt", 5),
    Rule("fineweb", "line_punct_ratio", "fineweb_line_punct_ratio", "lt", 0.12),
    Rule("fineweb", "short_line_ratio", "fineweb_short_line_ratio", "gt", 0.67),
    Rule("fineweb", "char_dup_ratio", "fineweb_char_dup_ratio", "gt", 0.01),
    Rule("fineweb", "list_ratio", "fineweb_list_ratio", "gt", 0.3),
)
FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")

INT_COLUMNS = (
    "gopher_n_words",
    "gopher_n_non_symbol_words",
    "gopher_stop_words",
    "c4_lines",
    "c4_lines_kept",
    "c4_lines_too_long_word",
    "c4_lines_no_terminal_punct",
    "c4_lines_too_few_words",
    "c4_lines_javascript",
    "c4_lines_policy",
    "c4_sentences",
    "c4_lorem_line",
    "c4_curly_line",
    "fineweb_lines",
)
FLOAT_COLUMNS = tuple(dict.fromkeys(r.column for r in RULES if r.column not in INT_COLUMNS))
COLUMNS = INT_COLUMNS + FLOAT_COLUMNS


@lru_cache(1)
def _spacy_en():
    import spacy  # heavy: deferred until used

    return spacy.blank("en")


@lru_cache(1)
def _punct_tables() -> tuple[frozenset[str], frozenset[str]]:
    from datatrove.utils.text import PUNCTUATION_SET  # heavy: deferred until used
    from spacy.pipeline.sentencizer import Sentencizer  # heavy: deferred until used

    return frozenset(PUNCTUATION_SET), frozenset(Sentencizer.default_punct_chars)


class _Chunk:
    """Everything the rules need from one whitespace-free chunk, computed once from its spaCy tokens."""

    __slots__ = ("tokens", "hashes", "n_non_symbol", "len_non_symbol", "n_alpha", "stop_bits", "sent")

    def __init__(self, toks: list[tuple[str, bool]], punct: frozenset[str], sent_punct: frozenset[str]):
        self.tokens = tuple(text for text, _ in toks)
        self.hashes = tuple(map(_poly_hash, self.tokens))
        non_symbol = [w for w in self.tokens if any(ch not in punct for ch in w)]
        self.n_non_symbol = len(non_symbol)
        self.len_non_symbol = sum(map(len, non_symbol))
        self.n_alpha = sum(any(c.isalpha() for c in w) for w in self.tokens)
        self.stop_bits = 0
        for w in self.tokens:
            self.stop_bits |= _STOP_BIT.get(w, 0)
        self.sent = (_sentencizer_step(toks, False, sent_punct), _sentencizer_step(toks, True, sent_punct))


_B = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_B_INV = pow(_B, -1, 1 << 64)
_MASK = (1 << 64) - 1


@lru_cache(1 << 18)
def _poly_hash(s: str) -> int:
    """Polynomial hash of a string's code points modulo 2**64 (concatenations compose, see NgramHasher)."""
    h = 0
    for c in s:
        h = (h * _B + ord(c)) & _MASK
    return h


class _Powers:
    """B**k and B**-k modulo 2**64 for k up to the longest token seen (grown on demand)."""

    def __init__(self) -> None:
        self.fwd = self.inv = np.ones(1, dtype=np.uint64)

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k >= len(self.fwd):
            size = max(k + 1, 2 * len(self.fwd), 1024)
            fwd, inv = np.full(size, _B, dtype=np.uint64), np.full(size, _B_INV, dtype=np.uint64)
            fwd[0] = inv[0] = 1
            self.fwd, self.inv = np.cumprod(fwd), np.cumprod(inv)
        return self.fwd, self.inv


_POWERS = _Powers()
_SMALL_DOC_WORDS = 400


def _window_keys(hashes: np.ndarray, lens: np.ndarray) -> tuple[Callable[[int], np.ndarray], np.ndarray]:
    """Hash of the concatenation of every window of words, for any window size, in O(words) numpy work.

    With C_i the chars before word i and S_i = sum_{k<i} h_k * B**-C_{k+1}, the polynomial hash of
    words[i:i+n] concatenated is B**C_{i+n} * (S_{i+n} - S_i) mod 2**64: equal strings give equal keys;
    different strings collide with probability ~2**-64 per pair.
    """
    fwd, inv = _POWERS.get(int(lens.max()) if len(lens) else 0)
    b_c = np.empty(len(lens) + 1, dtype=np.uint64)
    b_c[0] = 1
    np.cumprod(fwd[lens], out=b_c[1:])
    binv_c = np.cumprod(inv[lens])
    s = np.zeros(len(lens) + 1, dtype=np.uint64)
    np.cumsum(hashes * binv_c, out=s[1:])
    c = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=c[1:])

    def keys(n: int) -> np.ndarray:
        return b_c[n:] * (s[n:] - s[:-n])

    return keys, c


def _sentencizer_step(toks: list[tuple[str, bool]], seen: bool, sent_punct: frozenset[str]) -> tuple[int, bool]:
    """spaCy Sentencizer over tokens from state ``seen``: (new sentence starts, final state)."""
    starts = 0
    for text, is_punct in toks:
        in_punct = text in sent_punct
        if seen and not is_punct and not in_punct:
            starts += 1
            seen = False
        elif in_punct:
            seen = True
    return starts, seen


class HeuristicScorer:
    """Computes every rule value of :data:`COLUMNS` for batches of texts (one pass per document)."""

    def __init__(self, max_cache: int = 500_000):
        self.nlp = _spacy_en()
        self.punct, self.sent_punct = _punct_tables()
        self.cache: dict[str, _Chunk] = {}
        self.max_cache = max_cache

    def _chunk(self, c: str) -> _Chunk:
        info = self.cache.get(c)
        if info is None:
            self._tokenize_new([c])
            info = self.cache[c]
        return info

    def _tokenize_new(self, chunks: list[str]) -> None:
        """spaCy-tokenize chunks not seen yet, each on its own: spaCy's special-case matcher can merge tokens across
        chunk boundaries inside one long string, so joining chunks into one call would not be exact."""
        new = [c for c in dict.fromkeys(chunks) if c not in self.cache]
        if len(self.cache) + len(new) >= self.max_cache:
            self.cache.clear()
        for c, doc in zip(new, self.nlp.tokenizer.pipe(new), strict=True):
            self.cache[c] = _Chunk([(t.text, t.is_punct) for t in doc], self.punct, self.sent_punct)

    def words(self, text: str) -> list[str]:
        """datatrove's ``split_into_words(text)`` (spaCy English tokens, whitespace stripped)."""
        out: list[str] = []
        for c in text.split():
            out.extend(self._chunk(c).tokens)
        return out

    def score(self, text: str) -> dict[str, Any]:
        """All rule values of one document."""
        chunks = [self._chunk(c) for c in text.split()]
        words: list[str] = []
        for ch in chunks:
            words.extend(ch.tokens)
        row: dict[str, Any] = {}
        lines = text.splitlines()
        row.update(self._gopher_quality(text, words, chunks, lines))
        row.update(self._gopher_repetition(text, words, chunks))
        row.update(self._c4(lines))
        row.update(self._fineweb(text, len(words)))
        return row

    def score_batch(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Rule values of many documents as columns (int64 / float64 arrays)."""
        self._tokenize_new([c for t in texts for c in t.split()])
        rows = [self.score(t) for t in texts]
        out = {c: np.array([r[c] for r in rows], dtype=np.int64) for c in INT_COLUMNS}
        out.update({c: np.array([r[c] for r in rows], dtype=np.float64) for c in FLOAT_COLUMNS})
        return out

    def _gopher_quality(self, text: str, words: list[str], chunks: list[_Chunk], lines: list[str]) -> dict:
        n_words = len(words)
        n_non_symbol = sum(ch.n_non_symbol for ch in chunks)
        len_non_symbol = sum(ch.len_non_symbol for ch in chunks)
        stop_bits = 0
        for ch in chunks:
            stop_bits |= ch.stop_bits
        n_lines = len(lines)
        bullets = sum(s.lstrip().startswith(("•", "-")) for s in lines)
        end_ellipsis = sum(s.rstrip().endswith(("...", "…")) for s in lines)
        return {
            "gopher_n_words": n_words,
            "gopher_n_non_symbol_words": n_non_symbol,
            # np.mean of the lengths: float64 sum / count, the same float for integer lengths
            "gopher_mean_word_length": len_non_symbol / n_non_symbol if n_non_symbol else math.nan,
            "gopher_hash_ratio": text.count("#") / n_words if n_words else math.nan,
            "gopher_ellipsis_ratio": (text.count("...") + text.count("…")) / n_words if n_words else math.nan,
            "gopher_bullet_lines_ratio": bullets / n_lines if n_lines else math.nan,
            "gopher_end_ellipsis_lines_ratio": end_ellipsis / n_lines if n_lines else math.nan,
            "gopher_alpha_words_ratio": sum(ch.n_alpha for ch in chunks) / n_words if n_words else math.nan,
            "gopher_stop_words": stop_bits.bit_count(),
        }

    def _gopher_repetition(self, text: str, words: list[str], chunks: list[_Chunk] | None = None) -> dict:
        n_chars = len(text)
        row: dict[str, float] = {}
        if not text:
            row.update({c: math.nan for c in _REPETITION_COLUMNS})
            return row
        paragraphs = _PARAGRAPH_RE.split(text.strip())
        dup, dup_chars = _find_duplicates(paragraphs)
        row["gopher_dup_para_frac"] = dup / len(paragraphs)
        row["gopher_dup_para_char_frac"] = dup_chars / n_chars
        lines = _LINE_RE.split(text)
        dup, dup_chars = _find_duplicates(lines)
        row["gopher_dup_line_frac"] = dup / len(lines)
        row["gopher_dup_line_char_frac"] = dup_chars / n_chars
        if len(words) < _SMALL_DOC_WORDS:  # numpy's per-call overhead loses on short documents
            for n in TOP_NGRAMS:
                row[f"gopher_top_{n}_gram_frac"] = _top_ngram_chars(words, n) / n_chars
            for n in DUP_NGRAMS:
                row[f"gopher_dup_{n}_gram_frac"] = _all_duplicate_chars(words, n) / n_chars
            return row
        if chunks is None:
            chunks = [self._chunk(c) for c in text.split()]
        hashes = np.fromiter(itertools.chain.from_iterable(ch.hashes for ch in chunks), np.uint64, len(words))
        lens = np.fromiter(map(len, words), np.int64, len(words))
        keys, cum = _window_keys(hashes, lens)
        # " ".join(window) == joining the words each followed by one space, minus the last space
        space_keys, space_cum = _window_keys(hashes * np.uint64(_B) + np.uint64(32), lens + 1)
        for n in TOP_NGRAMS:
            row[f"gopher_top_{n}_gram_frac"] = _top_ngram_chars_hashed(space_keys, space_cum, n) / n_chars
        for n in DUP_NGRAMS:
            row[f"gopher_dup_{n}_gram_frac"] = _all_duplicate_chars_hashed(keys, cum, n) / n_chars
        return row

    def _c4(self, lines: list[str]) -> dict:
        counts = dict.fromkeys(("total", "kept", "long", "punct", "few", "js", "policy"), 0)
        sentences, lorem_line, curly_line = 0, -1, -1
        for i, raw in enumerate(lines):
            counts["total"] += 1
            line = raw.strip()
            words = line.split()
            if any(len(w) > 1000 for w in words):
                counts["long"] += 1
                continue
            if "[" in line:
                line = CITATION_REGEX.sub("", line)
            if not line.endswith(C4_END_PUNCTUATION) or line.endswith("..."):
                counts["punct"] += 1
                continue
            if len(words) < 3:
                counts["few"] += 1
                continue
            line_l = line.lower()
            if "lorem ipsum" in line_l and lorem_line < 0:
                lorem_line = i
            if "javascript" in line_l:
                counts["js"] += 1
                continue
            if "{" in line and curly_line < 0:
                curly_line = i
            if any(p in line_l for p in C4_POLICY_SUBSTRINGS):
                counts["policy"] += 1
                continue
            sentences += self._sentences(line)
            counts["kept"] += 1
        return {
            "c4_lines": counts["total"],
            "c4_lines_kept": counts["kept"],
            "c4_lines_too_long_word": counts["long"],
            "c4_lines_no_terminal_punct": counts["punct"],
            "c4_lines_too_few_words": counts["few"],
            "c4_lines_javascript": counts["js"],
            "c4_lines_policy": counts["policy"],
            "c4_sentences": sentences,
            "c4_lorem_line": lorem_line,
            "c4_curly_line": curly_line,
        }

    def _sentences(self, line: str) -> int:
        """Sentences spaCy's sentencizer finds in a stripped, non-empty line."""
        parts = _GAP_RE.split(line)
        starts, seen = 1, False
        for k, part in enumerate(parts):
            if k % 2:  # whitespace gap: one space is trailing whitespace, anything else is a (non-punct) token
                if part != " " and seen:
                    starts += 1
                    seen = False
                continue
            add, seen = self._chunk(part).sent[seen]
            starts += add
        return starts

    def _fineweb(self, text: str, n_words: int) -> dict:
        lines = [line for line in text.split("\n") if line.strip() != ""]
        n = len(lines)
        if n == 0:
            return {"fineweb_lines": 0, **{c: math.nan for c in _FINEWEB_RATIOS}}
        stop = _terminal_punctuation()
        n_chars_no_nl = len(text) - text.count("\n")
        return {
            "fineweb_lines": n,
            "fineweb_line_punct_ratio": sum(1 for line in lines if line.endswith(stop)) / n,
            "fineweb_short_line_ratio": sum(1 for line in lines if len(line) <= 30) / n,
            "fineweb_char_dup_ratio": _find_duplicates(lines)[1] / n_chars_no_nl if n_chars_no_nl else math.nan,
            "fineweb_list_ratio": text.count("\n") / n_words if n_words else math.nan,
        }


_REPETITION_COLUMNS = tuple(r.column for r in RULES if r.filter == "gopher_repetition")
_FINEWEB_RATIOS = tuple(r.column for r in RULES if r.filter == "fineweb")


@lru_cache(1)
def _terminal_punctuation() -> tuple[str, ...]:
    from datatrove.utils.text import TERMINAL_PUNCTUATION  # heavy: deferred until used

    return tuple(TERMINAL_PUNCTUATION)


def _find_duplicates(items: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    dup = dup_chars = 0
    for x in items:
        if x in seen:
            dup += 1
            dup_chars += len(x)
        else:
            seen.add(x)
    return dup, dup_chars


def _top_ngram_chars_hashed(keys: Callable[[int], np.ndarray], cum: np.ndarray, n: int) -> int:
    """``find_top_duplicate(get_n_grams(words, n))`` on window keys: most frequent n-gram (first seen on ties)."""
    m = len(cum) - n
    if m <= 0:
        return 0
    _, first, counts = np.unique(keys(n), return_index=True, return_counts=True)
    best = counts.max()
    i = int(first[counts == best].min())
    return (int(cum[i + n] - cum[i]) - 1) * int(best)


def _all_duplicate_chars_hashed(keys: Callable[[int], np.ndarray], cum: np.ndarray, n: int) -> int:
    """``find_all_duplicate(words, n)`` on window keys: walk only positions whose n-gram occurred before."""
    m = len(cum) - n
    if m <= 0:
        return 0
    k = keys(n)
    _, first, inverse = np.unique(k, return_index=True, return_inverse=True)
    if len(first) == m:
        return 0
    candidates = np.flatnonzero(first[inverse] != np.arange(m)).tolist()
    grams = k.tolist()
    seen: set[int] = set()
    repeated, idx = 0, 0
    for c in candidates:
        if c < idx:
            continue
        seen.update(grams[idx:c])
        g = grams[c]
        if g in seen:
            repeated += int(cum[c + n] - cum[c])
            idx = c + n
        else:
            seen.add(g)
            idx = c + 1
    return repeated


def _top_ngram_chars(words: list[str], n: int) -> int:
    if len(words) < n:
        return 0
    grams = map(" ".join, zip(*(words[i:] for i in range(n)), strict=False))
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def _all_duplicate_chars(words: list[str], n: int) -> int:
    """datatrove's ``find_all_duplicate``: chars of repeated n-grams, skipping past each repeat.

    Positions whose n-gram occurs there for the first time are always "new", so we add them to the seen set in bulk
    and walk only the repeat positions (candidates) one by one.
    """
    if len(words) < n:
        return 0
    grams = list(map("".join, zip(*(words[i:] for i in range(n)), strict=False)))
    m = len(grams)
    first = dict(zip(reversed(grams), range(m - 1, -1, -1), strict=True))
    if len(first) == m:
        return 0
    firsts = np.fromiter(map(first.__getitem__, grams), dtype=np.int64, count=m)
    candidates = np.flatnonzero(firsts != np.arange(m)).tolist()
    seen: set[str] = set()
    repeated, idx = 0, 0
    for c in candidates:
        if c < idx:
            continue
        seen.update(grams[idx:c])
        g = grams[c]
        if g in seen:
            repeated += len(g)
            idx = c + n
        else:
            seen.add(g)
            idx = c + 1
    return repeated


def decide(values: dict[str, Any], thresholds: dict[str, float | None] | None = None) -> dict[str, np.ndarray]:
    """datatrove's decision per filter from stored values: filter -> array of drop reasons ('' = kept).

    ``thresholds`` maps a reason (e.g. ``gopher_short_doc``) to a threshold; ``None`` turns a rule off, and so does 0
    where datatrove tests truthiness (:attr:`Rule.zero_off`). C4's ``lorem_ipsum``/``curly_bracket`` take True/False.
    """
    th = {r.reason: r.default for r in RULES} | {"lorem_ipsum": True, "curly_bracket": True} | (thresholds or {})
    n = len(np.asarray(values["gopher_n_words"]))
    out = {f: np.full(n, "", dtype=object) for f in FILTERS}
    for f in FILTERS:
        reason = out[f]
        for cond, why in _special(values, f, th, n):
            reason[(reason == "") & cond] = why
        for r in RULES:
            t = th.get(r.reason)
            if r.filter != f or t is None or (r.zero_off and not t):
                continue
            v = np.asarray(values[r.column], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                cond = v < t if r.op == "lt" else v > t
            reason[(reason == "") & cond] = r.reason
    return out


def _special(values: dict[str, Any], f: str, th: dict, n: int) -> list[tuple[np.ndarray, str]]:
    if f == "gopher_repetition":
        return [(np.isnan(np.asarray(values["gopher_dup_para_frac"], dtype=np.float64)), "empty")]
    if f == "fineweb":
        return [(np.asarray(values["fineweb_lines"]) == 0, "empty")]
    if f == "c4":
        lorem = np.asarray(values["c4_lorem_line"]) if th.get("lorem_ipsum") else np.full(n, -1)
        curly = np.asarray(values["c4_curly_line"]) if th.get("curly_bracket") else np.full(n, -1)
        big = np.iinfo(np.int64).max
        lo, cu = np.where(lorem < 0, big, lorem), np.where(curly < 0, big, curly)
        return [((lorem >= 0) & (lo <= cu), "lorem_ipsum"), ((curly >= 0) & (cu < lo), "curly_bracket")]
    return []
