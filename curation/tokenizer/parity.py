"""Parity-aware BPE (Foroutan et al. 2025, "Parity-Aware Byte-Pair Encoding", arXiv 2508.04796).

Classic BPE merges the pair most frequent over the whole sample, so languages with more text get the long tokens.
Parity-aware BPE measures, after every merge, how many tokens each language spends on a parallel dev set (the same
units in every language) and gives the next merge to the worst-compressed language: the pair most frequent in *that*
language's training text. Variants from the paper, as knobs: the first ``global_merges`` share of merges by global
frequency (hybrid), and a moving window that keeps one language from taking more than ``alpha / languages`` of the
last ``window`` merges (a language whose data is exhausted cannot starve the others).

Cost of a language on the dev set = its tokens / the UTF-8 bytes of the English side of the same units, so languages
covering different units compare (English itself: tokens per English byte). Languages without dev units take part
only through global frequency.

Data layout (never a pass over the corpus per merge): every distinct (pre-token, language) of the sample is a run of
symbols in flat arrays with next/prev links; ``occ[pair]`` lists the positions where the pair may start (stale entries
are skipped when read); pair counts are kept per language and in total, and updated only around the occurrences a
merge touches; lazy max-heaps give the most frequent pair of a language (an entry is re-pushed with its true count
when popped stale). The dev set lives in the same kind of arrays, merged with every step, so its token counts per
language are exact at every step.

The output is a standard byte-level ``tokenizers.models.BPE(vocab, merges)`` under the recipe's normalizer,
pre-tokenizer and decoder: ``AutoTokenizer.from_pretrained`` loads it and any text round-trips exactly.
"""

from __future__ import annotations

import heapq
import logging
from array import array
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_M = 1 << 21  # pair key = left * _M + right; symbol ids stay below 2**21 (vocab <= 1M)


def byte_alphabet() -> list[str]:
    """The 256 byte-level characters (GPT-2 ``bytes_to_unicode``) in byte order: symbol id = byte value."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


@dataclass
class Segments:
    """Symbol runs of many words in flat arrays: ``sym`` (-1 = merged away), ``nxt``/``prv`` links (-1 = word edge),
    the language and weight of the word each position belongs to, and where each pair may occur."""

    sym: array
    nxt: array
    prv: array
    lang: array
    weight: array
    occ: dict[int, array] = field(default_factory=dict)

    @classmethod
    def build(cls, words: dict[tuple[str, int], int], char_id: dict[str, int]) -> Segments:
        """Runs of byte-level symbols, one per distinct (pre-token, language) with its count as weight."""
        sym, lang, weight, nxt, prv = array("i"), array("i"), array("i"), array("i"), array("i")
        for (piece, lg), n in words.items():
            start, k = len(sym), len(piece)
            if not k:
                continue
            try:
                sym.extend(char_id[ch] for ch in piece)
            except KeyError as e:
                raise ValueError(f"pre-token {piece[:40]!r} is not byte-level (char {e.args[0]!r}); parity BPE "
                                 "needs a byte-level pre-tokenizer") from None  # fmt: skip
            lang.extend([lg] * k)
            weight.extend([n] * k)
            nxt.extend(range(start + 1, start + k + 1))
            nxt[-1] = -1
            prv.append(-1)
            prv.extend(range(start, start + k - 1))
        return cls(sym, nxt, prv, lang, weight)

    def pair_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, pair keys) of every adjacent pair, as numpy arrays."""
        sym = np.frombuffer(self.sym, dtype=np.int32).astype(np.int64)
        nxt = np.frombuffer(self.nxt, dtype=np.int32)
        pos = np.flatnonzero(nxt >= 0)
        return pos, sym[pos] * _M + sym[nxt[pos]]

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``occ`` from scratch; returns (pair keys, positions) sorted by key for counting."""
        pos, keys = self.pair_keys()
        order = np.argsort(keys, kind="stable")
        keys, pos = keys[order], pos[order]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        starts, ends = np.r_[0, cuts], np.r_[cuts, len(keys)]
        pos32 = pos.astype(np.int32)
        self.occ = {
            k: array("i", pos32[s:e].tobytes()) for k, s, e in zip(keys[starts].tolist(), starts, ends, strict=True)
        }
        return keys, pos

    def merge(self, a: int, b: int, c: int, counts: ParityCounts | None, dev_tokens: np.ndarray | None) -> int:
        """Replace every occurrence of (a, b) by c, left to right within each word; returns how many were merged.

        With ``counts`` the pair counts around each occurrence are updated (training); with ``dev_tokens`` the token
        count of the occurrence's language drops by its weight (dev set)."""
        stale = self.occ.pop(a * _M + b, None)
        if not stale:
            return 0
        sym, nxt, prv, occ = self.sym, self.nxt, self.prv, self.occ
        lang, weight = self.lang, self.weight
        merged = 0
        for p in sorted(set(stale)):
            if sym[p] != a:
                continue
            q = nxt[p]
            if q < 0 or sym[q] != b:
                continue
            w, lg = weight[p], lang[p]
            o, r = prv[p], nxt[q]
            if o >= 0:
                x = sym[o]
                new = x * _M + c
                occ.setdefault(new, array("i")).append(o)
                if counts is not None:
                    counts.move(lg, x * _M + a, new, w)
            if r >= 0:
                y = sym[r]
                new = c * _M + y
                occ.setdefault(new, array("i")).append(p)
                if counts is not None:
                    counts.move(lg, b * _M + y, new, w)
            sym[p], sym[q], nxt[p] = c, -1, r
            if r >= 0:
                prv[r] = p
            merged += 1
            if dev_tokens is not None:
                dev_tokens[lg] -= w
        return merged


class ParityCounts:
    """Pair counts per language and in total, with lazy max-heaps (entries may be stale; re-pushed when popped)."""

    def __init__(self, n_langs: int):
        self.by_lang: list[dict[int, int]] = [{} for _ in range(n_langs)]
        self.total: dict[int, int] = {}
        self.heaps: list[list[tuple[int, int]]] = [[] for _ in range(n_langs)]
        self.total_heap: list[tuple[int, int]] = []
        self._touched: set[tuple[int, int]] = set()

    def fill(self, segs: Segments, keys: np.ndarray, pos: np.ndarray) -> None:
        """Initial counts from ``Segments.index`` output (keys sorted, with their positions)."""
        lang = np.frombuffer(segs.lang, dtype=np.int32)[pos].astype(np.int64)
        w = np.frombuffer(segs.weight, dtype=np.int32)[pos].astype(np.int64)
        for lg in np.unique(lang):
            m = lang == lg
            uk, inv = np.unique(keys[m], return_inverse=True)
            sums = np.bincount(inv, weights=w[m]).astype(np.int64)
            self.by_lang[int(lg)] = dict(zip(uk.tolist(), sums.tolist(), strict=True))
            self.heaps[int(lg)] = list(zip((-sums).tolist(), uk.tolist(), strict=True))
            heapq.heapify(self.heaps[int(lg)])
        uk, inv = np.unique(keys, return_inverse=True)
        sums = np.bincount(inv, weights=w).astype(np.int64)
        self.total = dict(zip(uk.tolist(), sums.tolist(), strict=True))
        self.total_heap = list(zip((-sums).tolist(), uk.tolist(), strict=True))
        heapq.heapify(self.total_heap)

    def move(self, lg: int, old: int, new: int, w: int) -> None:
        """``w`` occurrences of pair ``old`` became pair ``new`` in language ``lg``."""
        d = self.by_lang[lg]
        d[old] -= w
        d[new] = d.get(new, 0) + w
        t = self.total
        t[old] -= w
        t[new] = t.get(new, 0) + w
        self._touched.add((lg, new))

    def drop(self, key: int) -> None:
        """A merged pair: its counts become zero everywhere."""
        for d in self.by_lang:
            d.pop(key, None)
        self.total.pop(key, None)

    def push_touched(self) -> None:
        """Push the pairs whose counts grew in the last merge (decreases stay lazy)."""
        pushed = set()
        for lg, key in self._touched:
            c = self.by_lang[lg].get(key, 0)
            if c > 0:
                heapq.heappush(self.heaps[lg], (-c, key))
            if key not in pushed and self.total.get(key, 0) > 0:
                pushed.add(key)
                heapq.heappush(self.total_heap, (-self.total[key], key))
        self._touched.clear()

    @staticmethod
    def _top(heap: list[tuple[int, int]], counts: dict[int, int]) -> tuple[int, int]:
        while heap:
            negc, key = heap[0]
            c = counts.get(key, 0)
            if c == -negc:
                return key, c
            if c > 0:
                heapq.heapreplace(heap, (-c, key))
            else:
                heapq.heappop(heap)
        return -1, 0

    def top(self, lg: int | None) -> tuple[int, int]:
        """(pair key, count) of the most frequent pair in language ``lg`` (None = in total); (-1, 0) when none."""
        if lg is None:
            return self._top(self.total_heap, self.total)
        return self._top(self.heaps[lg], self.by_lang[lg])


@dataclass
class ParityResult:
    """The learned vocabulary (token string -> id, specials first) and merges, plus how training went."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    stats: dict[str, Any]


def _word_counts(
    docs: Iterable[tuple[str, str]], pre_tokenize: Any, lang_id: dict[str, int]
) -> tuple[dict[tuple[str, int], int], Counter]:
    words: Counter = Counter()
    chars: Counter = Counter()
    for text, lang in docs:
        lg = lang_id.setdefault(lang, len(lang_id))
        for piece, _ in pre_tokenize(text):
            words[(piece, lg)] += 1
        chars[lang] += len(text)
    return words, chars


def train_parity_bpe(
    train_docs: Iterable[tuple[str, str]],
    dev_units: list[tuple[str, str, str]],
    pre_tokenize: Any,
    vocab_size: int,
    special_tokens: list[str],
    *,
    english: str = "en",
    min_frequency: int = 2,
    target_premium: float = 1.0,
    global_merges: float = 0.0,
    window: int = 0,
    alpha: float = 2.0,
    log_every: int = 2000,
) -> ParityResult:
    """Learn merges until the vocabulary (specials + 256 bytes + merges) reaches ``vocab_size``.

    ``train_docs`` yields (text, language) of the training sample (repeats allowed); ``dev_units`` holds (unit,
    language, text) of the parallel dev set; ``pre_tokenize(text)`` returns the byte-level pre-tokens as
    ``PreTokenizer.pre_tokenize_str`` does. English's dev cost counts ``target_premium`` times (1 = full parity;
    more lets English be that much cheaper before others catch up). Stops early when no pair occurs
    ``min_frequency`` times.
    """
    alphabet = byte_alphabet()
    char_id = {ch: i for i, ch in enumerate(alphabet)}
    lang_id: dict[str, int] = {}
    words, train_chars = _word_counts(train_docs, pre_tokenize, lang_id)
    dev_words, dev_content, dev_units_n = _dev_words(dev_units, pre_tokenize, lang_id, english)
    n_langs = len(lang_id)
    segs = Segments.build(words, char_id)
    dev = Segments.build(dev_words, char_id)
    del words, dev_words
    keys, pos = segs.index()
    counts = ParityCounts(n_langs)
    counts.fill(segs, keys, pos)
    del keys, pos
    dev.index()
    dev_tokens = np.zeros(n_langs, dtype=np.int64)
    np.add.at(dev_tokens, np.frombuffer(dev.lang, dtype=np.int32), np.frombuffer(dev.weight, dtype=np.int32))
    content = np.array([dev_content.get(i, 0) for i in range(n_langs)], dtype=float)
    scaled = content.copy()  # the worst language is the one with most tokens / scaled content
    if english in lang_id:
        scaled[lang_id[english]] /= target_premium  # English's cost counts target_premium times
    parity_langs = [i for i in range(n_langs) if content[i] > 0 and counts.by_lang[i]]
    names = {i: lang for lang, i in lang_id.items()}
    if not parity_langs:
        log.warning("parity BPE: no language has both training text and dev units; merges follow global frequency")

    strs = list(alphabet)
    str_id = {s: i for i, s in enumerate(strs)}
    n_merges_target = vocab_size - len(special_tokens) - len(alphabet)
    n_global = int(round(global_merges * max(n_merges_target, 0)))
    merges: list[tuple[str, str]] = []
    chosen_for: Counter = Counter()
    recent: deque = deque(maxlen=window or 1)
    limit = alpha * (window or 1) / max(1, len(parity_langs))
    trace = []
    while len(strs) < len(alphabet) + n_merges_target:
        step = len(merges)
        lg = None if step < n_global else _worst_language(counts, dev_tokens, scaled, parity_langs, recent,
                                                          window, limit, min_frequency)  # fmt: skip
        key, c = counts.top(lg)
        if c < min_frequency:
            log.info("parity BPE: no pair occurs %d times; stopping at %d merges", min_frequency, step)
            break
        a, b = divmod(key, _M)
        s = strs[a] + strs[b]
        cid = str_id.get(s)
        if cid is None:
            cid = str_id[s] = len(strs)
            strs.append(s)
        merges.append((strs[a], strs[b]))
        segs.merge(a, b, cid, counts, None)
        dev.merge(a, b, cid, None, dev_tokens)
        counts.drop(key)
        counts.push_touched()
        chosen_for[names[lg] if lg is not None else "global"] += 1
        if window:
            recent.append(lg)
        if log_every and (step + 1) % log_every == 0:
            trace.append(_trace_row(step + 1, dev_tokens, content, parity_langs, names))
    vocab = {t: i for i, t in enumerate(special_tokens)}
    for s in strs:
        vocab.setdefault(s, len(vocab))
    cost = {names[i]: float(dev_tokens[i] / content[i]) for i in parity_langs}
    stats = {
        "merges": len(merges),
        "target_premium": target_premium,
        "global_merges": min(n_global, len(merges)),
        "languages": {names[i]: i for i in range(n_langs)},
        "parity_languages": sorted(names[i] for i in parity_langs),
        "merges_chosen_for": dict(sorted(chosen_for.items())),
        "dev_units": dev_units_n,
        "dev_tokens": {names[i]: int(dev_tokens[i]) for i in range(n_langs) if dev_tokens[i]},
        "dev_cost_per_english_byte": cost,
        "dev_premium_vs_english": _dev_premium(cost, english),
        "train_chars": dict(train_chars),
        "distinct_words": int(np.count_nonzero(np.frombuffer(segs.prv, dtype=np.int32) < 0)),
        "symbols": len(segs.sym),
        "trace": trace,
    }
    return ParityResult(vocab, merges, stats)


def _worst_language(
    counts: ParityCounts,
    dev_tokens: np.ndarray,
    content: np.ndarray,
    langs: list[int],
    recent: deque,
    window: int,
    limit: float,
    min_frequency: int,
) -> int | None:
    """The worst-compressed dev language that still has a pair worth merging (and room in the window), else None."""
    for lg in sorted(langs, key=lambda i: (-dev_tokens[i] / content[i], i)):
        if window and recent.count(lg) > limit:
            continue
        if counts.top(lg)[1] >= min_frequency:
            return lg
    return None


def _dev_words(
    dev_units: list[tuple[str, str, str]], pre_tokenize: Any, lang_id: dict[str, int], english: str
) -> tuple[dict[tuple[str, int], int], dict[int, float], dict[str, int]]:
    """Dev pre-token counts, the content of each language (English bytes of its units) and units per language."""
    en_bytes = {u: len(t.encode("utf-8")) for u, lang, t in dev_units if lang == english}
    words: Counter = Counter()
    content: dict[int, float] = {}
    n_units: Counter = Counter()
    for unit, lang, text in dev_units:
        if unit not in en_bytes:
            continue
        lg = lang_id.setdefault(lang, len(lang_id))
        for piece, _ in pre_tokenize(text):
            words[(piece, lg)] += 1
        content[lg] = content.get(lg, 0.0) + en_bytes[unit]
        n_units[lang] += 1
    return dict(words), content, dict(n_units)


def _dev_premium(cost: dict[str, float], english: str) -> dict[str, float]:
    if english not in cost:
        return {}
    return {lang: c / cost[english] for lang, c in sorted(cost.items())}


def _trace_row(
    step: int, dev_tokens: np.ndarray, content: np.ndarray, langs: list[int], names: dict[int, str]
) -> dict[str, Any]:
    cost = {names[i]: round(float(dev_tokens[i] / content[i]), 4) for i in langs}
    worst = max(cost, key=cost.get) if cost else None
    return {"merges": step, "worst": worst, "cost": cost}
