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

import contextlib
import gc
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from curation.signals.chunk_tokenizer import english_chunk_tokenizer
from curation.signals.chunk_tokenizer import is_punct as _is_punct

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
_FIELD = 40  # bits per packed count (see _chunk_record): a document's counts stay below 2**40, so sums never carry
_STOP_SHIFT = 4 * _FIELD  # n_tokens, n_non_symbol, len_non_symbol, n_alpha, then one count per stop word
_STOP_BIT = {w: 1 << (_STOP_SHIFT + _FIELD * i) for i, w in enumerate(sorted(STOP_WORDS))}
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


# per token: (non-symbol, has a letter, stop-word bit, spaCy is_punct, sentencizer punct char, token id)
_TokenInfo = tuple[bool, bool, int, bool, bool, int]


# A chunk record is a plain tuple of atomic values, so Python's cycle collector untracks it (a cache of a million
# tracked objects made every full collection walk them all: most of the scorer's time went there):
# (tokens, token ids, packed counts, sentencizer transitions for entry states False/True)
_TOKENS, _IDS, _PACKED, _SENT = range(4)
_MASK40 = (1 << _FIELD) - 1


def _chunk_record(tokens: tuple[str, ...], infos: list[_TokenInfo]) -> tuple:
    """The record of one chunk: per-document sums of its packed counts give the Gopher quality numbers."""
    if len(tokens) == 1:  # most chunks: one word
        (non_symbol, alpha, stop, is_punct, in_punct, tid), t = infos[0], tokens[0]
        packed = 1 + ((1 << _FIELD) + (len(t) << 2 * _FIELD) if non_symbol else 0) + (alpha << 3 * _FIELD) + stop
        # the sentencizer from state False / True over one token (see _sentencizer_step)
        sent = ((0, in_punct), (0, True) if in_punct else (0, True) if is_punct else (1, False))
        return tokens, (tid,), packed, sent
    packed = len(tokens)
    for t, (non_symbol, alpha, stop, _, _, _) in zip(tokens, infos, strict=True):
        if non_symbol:
            packed += (1 << _FIELD) + (len(t) << 2 * _FIELD)
        packed += (alpha << 3 * _FIELD) + stop
    sent = (_sentencizer_step(infos, False), _sentencizer_step(infos, True))
    return tokens, tuple(i[5] for i in infos), packed, sent


def _unpack(packed: int) -> tuple[int, int, int, int, int]:
    """(words, non-symbol words, their total length, words with a letter, distinct stop words) of summed records."""
    n, non_symbol, len_non_symbol, alpha = ((packed >> (k * _FIELD)) & _MASK40 for k in range(4))
    stops = sum(1 for k in range(len(STOP_WORDS)) if (packed >> (_STOP_SHIFT + k * _FIELD)) & _MASK40)
    return n, non_symbol, len_non_symbol, alpha, stops


_B = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_B_INV = pow(_B, -1, 1 << 64)
_MASK = (1 << 64) - 1


def _poly_hashes(tokens: list[str]) -> list[int]:
    """:func:`_poly_hash` of many strings at once: with S_i = sum_{j<i} c_j * B**-j over their concatenation, the
    hash of chars [a, b) is B**(b-1) * (S_b - S_a) (mod 2**64)."""
    cps = np.frombuffer("".join(tokens).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    fwd, inv = _POWERS.get(len(cps))
    s = np.zeros(len(cps) + 1, dtype=np.uint64)
    np.cumsum(cps * inv[: len(cps)], out=s[1:])
    ends = np.cumsum(np.fromiter(map(len, tokens), np.int64, len(tokens)))
    starts = ends - np.fromiter(map(len, tokens), np.int64, len(tokens))
    return (fwd[np.maximum(ends - 1, 0)] * (s[ends] - s[starts])).tolist()


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
_packed, _ids = operator.itemgetter(_PACKED), operator.itemgetter(_IDS)
_DOC_MULT = 0xD6E8FEB86659FD93  # odd: keys of different documents stay apart (up to the same ~2**-64 collisions)


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


def _sentencizer_step(infos: list[_TokenInfo], seen: bool) -> tuple[int, bool]:
    """spaCy Sentencizer over tokens (``is_punct``, in its punct chars) from state ``seen``: (new sentence starts,
    final state)."""
    starts = 0
    for _, _, _, is_punct, in_punct, _ in infos:
        if seen and not is_punct and not in_punct:
            starts += 1
            seen = False
        elif in_punct:
            seen = True
    return starts, seen


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector for one batch: a batch allocates ~100 short-lived acyclic objects per document
    and every automatic collection walked the young ones with all they reference (the chunk cache among them), which
    cost 4-5x the scoring itself; nothing here makes reference cycles, and the caller's setting is restored after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class HeuristicScorer:
    """Computes every rule value of :data:`COLUMNS` for batches of texts (one pass per document).

    ``splitter``: ``"port"`` splits chunks with :mod:`curation.signals.chunk_tokenizer` (spaCy's algorithm and
    regexes in Python, spaCy itself for what it hands back); ``"spacy"`` calls spaCy for every new chunk (the
    reference the port is tested and benchmarked against).
    """

    def __init__(self, max_cache: int = 500_000, splitter: str = "port"):
        if splitter not in ("port", "spacy"):
            raise ValueError(f"splitter={splitter!r}: use 'port' (fast, exact) or 'spacy' (the reference)")
        self.nlp = _spacy_en()
        self.port = english_chunk_tokenizer() if splitter == "port" else None
        self.punct, self.sent_punct = _punct_tables()
        self.cache: dict[str, tuple] = {}
        self.token_info: dict[str, _TokenInfo] = {}
        self.token_hashes: list[int] = []  # by token id: polynomial hash (see _window_keys)
        self.token_lens: list[int] = []  # by token id: length in chars
        self._arrays = (np.empty(0, np.uint64), np.empty(0, np.int64))
        self._unhashed: list[str] = []
        self.max_cache = max_cache
        self.spacy_chunks = 0  # chunks spaCy tokenized (all of them with splitter="spacy")

    def _chunk(self, c: str) -> tuple:
        info = self.cache.get(c)
        if info is None:
            self._tokenize_new([c], clear=False)  # a batch's records must keep their token ids
            info = self.cache[c]
        return info

    def _info(self, t: str, is_punct: bool | None = None) -> _TokenInfo:
        """What the rules need of one token (:data:`_TokenInfo`), memoised."""
        info = self.token_info.get(t)
        if info is None:
            punct = _is_punct(t) if is_punct is None else is_punct
            info = (not self.punct.issuperset(t), any(c.isalpha() for c in t), _STOP_BIT.get(t, 0), punct,
                    t in self.sent_punct, len(self.token_hashes))  # fmt: skip
            self.token_info[t] = info
            self.token_hashes.append(0)  # filled by _hash_new_tokens
            self.token_lens.append(len(t))
            self._unhashed.append(t)
        return info

    def _hash_new_tokens(self) -> None:
        """Polynomial hashes of the tokens given ids since the last call, in one numpy pass."""
        if self._unhashed:
            first = len(self.token_hashes) - len(self._unhashed)
            self.token_hashes[first:] = _poly_hashes(self._unhashed)
            self._unhashed = []

    def _tokenize_new(self, chunks: list[str], clear: bool = True) -> None:
        """Tokenize chunks not seen yet, each on its own (as datatrove's one spaCy call per document does, see the
        module docstring): with the port, and with spaCy where the port hands a chunk back."""
        new = [c for c in dict.fromkeys(chunks) if c not in self.cache]
        if clear and (len(self.cache) + len(new) >= self.max_cache or len(self.token_info) >= self.max_cache):
            self.cache.clear()  # records hold token ids: both go together
            self.token_info.clear()
            self.token_hashes.clear()
            self.token_lens.clear()
            self._unhashed = []
            self._arrays = (np.empty(0, np.uint64), np.empty(0, np.int64))
        info, slow = self._info, []
        for c in new:
            toks = self.port.split(c) if self.port is not None else None
            if toks is None:
                slow.append(c)
            else:
                self.cache[c] = _chunk_record(tuple(toks), [info(t) for t in toks])
        self.spacy_chunks += len(slow)
        for c, doc in zip(slow, self.nlp.tokenizer.pipe(slow), strict=True):
            toks = [(t.text, t.is_punct) for t in doc]
            self.cache[c] = _chunk_record(tuple(t for t, _ in toks), [info(t, p) for t, p in toks])

    def words(self, text: str) -> list[str]:
        """datatrove's ``split_into_words(text)`` (spaCy English tokens, whitespace stripped)."""
        out: list[str] = []
        for c in text.split():
            out.extend(self._chunk(c)[_TOKENS])
        return out

    def score(self, text: str) -> dict[str, Any]:
        """All rule values of one document."""
        return {c: v[0].item() for c, v in self.score_batch([text]).items()}

    def score_batch(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Rule values of many documents as columns (int64 / float64 arrays)."""
        with _no_cycle_collection():
            return self._score_batch(texts)

    def _score_batch(self, texts: list[str]) -> dict[str, np.ndarray]:
        splits = [t.split() for t in texts]
        self._tokenize_new([c for parts in splits for c in parts])
        cache, chunk = self.cache, self._chunk
        per_doc = [[cache.get(c) or chunk(c) for c in parts] for parts in splits]
        rows = []
        for text, chunks in zip(texts, per_doc, strict=True):
            counts = _unpack(sum(map(_packed, chunks)))
            n_words = counts[0]
            lines = text.splitlines()
            row = self._gopher_quality(text, counts, lines)
            row.update(self._gopher_repetition(text))
            row.update(self._c4(lines))
            row.update(self._fineweb(text, n_words))
            rows.append(row)
        out = {c: np.array([r[c] for r in rows], dtype=np.int64) for c in INT_COLUMNS}
        out.update({c: np.array([r[c] for r in rows], dtype=np.float64) for c in FLOAT_COLUMNS})
        n_chars = np.array([len(t) for t in texts], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            for col, chars in _ngram_chars_batch(per_doc, out["gopher_n_words"], *self._token_arrays()).items():
                out[col] = np.where(n_chars > 0, chars / n_chars, math.nan)
        return out

    def _token_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Hash and length of every token id as arrays (extended with the ids added since the last call)."""
        self._hash_new_tokens()
        hashes, lens = self._arrays
        if len(hashes) < len(self.token_hashes):
            new = slice(len(hashes), len(self.token_hashes))
            hashes = np.concatenate([hashes, np.array(self.token_hashes[new], dtype=np.uint64)])
            lens = np.concatenate([lens, np.array(self.token_lens[new], dtype=np.int64)])
            self._arrays = hashes, lens
        return hashes, lens

    def _gopher_quality(self, text: str, counts: tuple[int, int, int, int, int], lines: list[str]) -> dict:
        n_words, n_non_symbol, len_non_symbol, n_alpha, stops = counts
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
            "gopher_alpha_words_ratio": n_alpha / n_words if n_words else math.nan,
            "gopher_stop_words": stops,
        }

    def _gopher_repetition(self, text: str) -> dict:
        """Paragraph and line duplicates (the n-gram columns come from :func:`_ngram_chars_batch`)."""
        n_chars = len(text)
        if not text:
            return dict.fromkeys(_REPETITION_COLUMNS, math.nan)
        row: dict[str, float] = {}
        paragraphs = _PARAGRAPH_RE.split(text.strip())
        dup, dup_chars = _find_duplicates(paragraphs)
        row["gopher_dup_para_frac"] = dup / len(paragraphs)
        row["gopher_dup_para_char_frac"] = dup_chars / n_chars
        lines = _LINE_RE.split(text)
        dup, dup_chars = _find_duplicates(lines)
        row["gopher_dup_line_frac"] = dup / len(lines)
        row["gopher_dup_line_char_frac"] = dup_chars / n_chars
        for c in _NGRAM_COLUMNS:
            row[c] = math.nan  # filled for the whole batch at once
        return row

    def _c4(self, lines: list[str]) -> dict:
        long = punct = few = js = policy = kept = 0
        sentences, lorem_line, curly_line = 0, -1, -1
        for i, raw in enumerate(lines):
            stripped = line = raw.strip()
            # a word over 1000 chars needs a line over 1000 chars: only such lines are split here
            if len(line) > 1000 and any(len(w) > 1000 for w in line.split()):
                long += 1
                continue
            if "[" in line:
                line = CITATION_REGEX.sub("", line)
            if not line.endswith(C4_END_PUNCTUATION) or line.endswith("..."):
                punct += 1
                continue
            if len(stripped.split()) < 3:  # datatrove counts the words before removing citations
                few += 1
                continue
            line_l = line.lower()
            if "lorem ipsum" in line_l and lorem_line < 0:
                lorem_line = i
            if "javascript" in line_l:
                js += 1
                continue
            if "{" in line and curly_line < 0:
                curly_line = i
            if any(p in line_l for p in C4_POLICY_SUBSTRINGS):
                policy += 1
                continue
            sentences += self._sentences(line)
            kept += 1
        return {
            "c4_lines": len(lines),
            "c4_lines_kept": kept,
            "c4_lines_too_long_word": long,
            "c4_lines_no_terminal_punct": punct,
            "c4_lines_too_few_words": few,
            "c4_lines_javascript": js,
            "c4_lines_policy": policy,
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
            add, seen = self._chunk(part)[_SENT][seen]
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
_NGRAM_COLUMNS = tuple(c for c in _REPETITION_COLUMNS if "_gram_" in c)
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


def _ngram_chars_batch(per_doc: list[list[tuple]], n_words: np.ndarray, token_hashes: np.ndarray,
                       token_lens: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """datatrove's top n-gram (``find_top_duplicate(get_n_grams(words, n))``) and duplicate n-gram
    (``find_all_duplicate(words, n)``) character counts of every document of a batch, one sort per n.

    The words of all documents are concatenated; a window never crosses a document (its key carries the document's
    index), so one ``np.unique`` per n serves the whole batch and numpy's per-call cost is paid per batch, not per
    document.
    """
    d = len(per_doc)
    chain = itertools.chain
    flat = list(chain.from_iterable(per_doc))
    total = int(n_words.sum())
    ids = np.fromiter(chain.from_iterable(map(_ids, flat)), np.int64, total)
    hashes, lens = token_hashes[ids], token_lens[ids]
    keys, cum = _window_keys(hashes, lens)
    # " ".join(window) == joining the words each followed by one space, minus the last space
    space_keys, space_cum = _window_keys(hashes * np.uint64(_B) + np.uint64(32), lens + 1)
    starts = np.zeros(d, dtype=np.int64)
    np.cumsum(n_words[:-1], out=starts[1:])
    out: dict[str, np.ndarray] = {}
    for n in TOP_NGRAMS + DUP_NGRAMS:
        top = n in TOP_NGRAMS
        m = np.maximum(n_words - n + 1, 0)  # windows per document
        chars = np.zeros(d, dtype=np.int64)
        out[f"gopher_top_{n}_gram_frac" if top else f"gopher_dup_{n}_gram_frac"] = chars
        w = int(m.sum())
        if w == 0:
            continue
        doc = np.repeat(np.arange(d), m)
        first_win = np.zeros(d, dtype=np.int64)
        np.cumsum(m[:-1], out=first_win[1:])
        pos = np.arange(w) - first_win[doc] + starts[doc]  # window start, as a word index into the batch
        k = (space_keys if top else keys)(n)[pos] * np.uint64(_DOC_MULT) + doc.astype(np.uint64)
        inverse, counts = _groups(k)
        c = space_cum if top else cum
        if top:
            count_at = counts[inverse]
            has = m > 0
            best = np.zeros(d, dtype=np.int64)
            best[has] = np.maximum.reduceat(count_at, first_win[has])
            hit = np.flatnonzero(count_at == best[doc])
            dh = doc[hit]  # ascending: the first hit of each document is where its value changes
            first_hit = np.flatnonzero(np.concatenate(([True], dh[1:] != dh[:-1]))) if len(dh) else dh
            docs_hit = dh[first_hit]
            p = pos[hit[first_hit]]
            chars[docs_hit] = (c[p + n] - c[p] - 1) * best[docs_hit]
        else:
            # only windows whose n-gram occurs 2+ times in its document can ever be found again: the walk visits
            # those alone (a unique one added to the seen set is never looked up)
            multi = np.flatnonzero(counts[inverse] > 1)
            if len(multi):
                mdoc = doc[multi]
                bounds = np.searchsorted(mdoc, np.arange(d + 1))
                local = (multi - first_win[mdoc]).tolist()
                codes = inverse[multi].tolist()
                cum_l = c.tolist()
                for di in np.flatnonzero(np.diff(bounds)).tolist():
                    a, b = int(bounds[di]), int(bounds[di + 1])
                    chars[di] = _walk_repeats(local[a:b], codes[a:b], n, cum_l, int(starts[di]))
    return out


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse, return_counts)`` minus the sorted values, from one unstable argsort (~4x
    faster): group of each position, size of each group."""
    order = np.argsort(keys)
    sk = keys[order]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, len(keys)))
    return inverse, counts


def _walk_repeats(positions: list[int], grams: list[int], n: int, cum: list[int], word0: int) -> int:
    """``find_all_duplicate``'s walk over one document's windows whose n-gram occurs 2+ times (positions ascending,
    with their n-gram codes): a window is visited unless a repeat before it skipped it; a visited window whose
    n-gram was seen at a visited window counts its chars and skips the next n - 1 windows."""
    seen: set[int] = set()
    repeated, idx = 0, 0
    for p, g in zip(positions, grams, strict=True):
        if p < idx:
            continue
        if g in seen:
            repeated += cum[word0 + p + n] - cum[word0 + p]
            idx = p + n
        else:
            seen.add(g)
            idx = p + 1
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
