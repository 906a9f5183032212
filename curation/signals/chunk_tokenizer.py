"""spaCy's English tokenizer for one whitespace-free chunk, ported to Python: the same splits, ~10x less work.

datatrove's word split (``split_into_words``) is spaCy ``blank("en")``; :class:`~curation.signals.heuristics.
HeuristicScorer` calls it once per distinct whitespace-free chunk. spaCy's cost per new chunk is mostly its machinery
(a ``Doc``, one ``Lexeme`` with a dozen attributes per new string), not the splitting. :class:`ChunkTokenizer` runs
the same algorithm (``Tokenizer._split_affixes`` + ``_attach_tokens`` of spaCy's ``tokenizer.pyx``, line by line)
with the tokenizer's *own* compiled prefix/suffix/infix/URL regexes and special cases, and returns strings only.

Why it is exact, and where it hands back to spaCy:
- Same algorithm, same regex objects, same special-case table: the port can only differ where the algorithm text
  differs, and the parity tests compare it with spaCy on every distinct chunk of a corpus in 16 languages plus
  generated strings.
- Regex calls are skipped only when the regex provably cannot match: :func:`pattern_gates` reads each pattern's
  parse tree (``re._parser``) and derives necessary conditions (the first char a prefix can start with, the last
  char a suffix can end with, chars every match or its lookbehind needs). A chunk failing a condition would fail
  the regex, so skipping the call changes nothing; most words pass no condition and cost no regex call at all.
- spaCy's post-pass (``_apply_special_cases``: a PhraseMatcher over the tokens re-merging special cases such as
  ``:-)``) is not ported: when any special-case pattern that would change the tokens occurs in a chunk's tokens,
  :meth:`ChunkTokenizer.split` returns ``None`` and the caller uses spaCy itself for that chunk.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from re import _constants as sre_c  # the stdlib's regex parser: the only way to read a compiled pattern's structure
from re import _parser as sre_parse
from typing import Any

ALL = None  # a char set that may be anything (the analysis gives up: the gate always passes)
CharSet = frozenset | None
_MAX_RANGE = 1 << 16  # larger ranges are treated as ALL (only weakens a gate, never makes it wrong)


def _union(a: CharSet, b: CharSet) -> CharSet:
    return ALL if a is ALL or b is ALL else a | b


def _char_set(op: Any, av: Any) -> CharSet:
    """Chars one single-char node can consume."""
    if op is sre_c.LITERAL:
        return frozenset(chr(av))
    if op is sre_c.IN:
        out: set[str] = set()
        for iop, iav in av:
            if iop is sre_c.LITERAL:
                out.add(chr(iav))
            elif iop is sre_c.RANGE and iav[1] - iav[0] < _MAX_RANGE:
                out.update(map(chr, range(iav[0], iav[1] + 1)))
            else:  # NEGATE, CATEGORY (\w, \d ...), huge ranges, case-folded items
                return ALL
        return frozenset(out)
    return ALL  # ANY, NOT_LITERAL, anything else


_SINGLE = (sre_c.LITERAL, sre_c.IN, sre_c.ANY, sre_c.NOT_LITERAL)
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", sre_c.MAX_REPEAT))
_ZERO_WIDTH = (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT)


def _edge(seq: list, last: bool) -> CharSet:
    """Chars the first (``last=False``) or last consumed char of any non-empty match of ``seq`` can be."""
    items = list(reversed(seq)) if last else list(seq)
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        if op in _SINGLE:
            return _char_set(op, av)
        if op is sre_c.SUBPATTERN:
            return ALL if av[1] & re.IGNORECASE else _edge(list(av[-1]), last)
        if op is sre_c.BRANCH:
            out: CharSet = frozenset()
            for branch in av[1]:
                out = _union(out, _edge(list(branch), last))
            return out
        if op in _REPEATS and av[0] >= 1:
            return _edge(list(av[2]), last)
        return ALL  # optional repeats, group references, conditionals: give up
    return ALL  # nothing consumed: an empty match, no edge to test


def _rank(cs: frozenset) -> tuple[int, int]:
    # letters are in most words: a needed set without them rules out more strings
    return sum(c.isalpha() for c in cs), len(cs)


def _needed(seq: list) -> CharSet:
    """A char set every match of ``seq`` (with the text its lookarounds inspect) contains a char of; ALL if none."""
    best: CharSet = ALL
    for op, av in seq:
        if op in _SINGLE:
            cand = _char_set(op, av)
        elif op is sre_c.SUBPATTERN:
            cand = ALL if av[1] & re.IGNORECASE else _needed(list(av[-1]))
        elif op is sre_c.ASSERT:  # a positive lookaround reads chars of the same string
            cand = _needed(list(av[1]))
        elif op in _REPEATS and av[0] >= 1:
            cand = _needed(list(av[2]))
        elif op is sre_c.BRANCH:
            cand = frozenset()
            for branch in av[1]:
                cand = _union(cand, _needed(list(branch)))
        else:
            continue
        if cand is not ALL and (best is ALL or _rank(cand) < _rank(best)):
            best = cand
    return best


def _anchored(seq: list, end: bool) -> bool:
    """Whether every match of ``seq`` starts at the string's start (``end=False``) or ends at its end."""
    if not seq:
        return False
    op, av = seq[-1] if end else seq[0]
    if op is sre_c.AT:
        return av in ((sre_c.AT_END, sre_c.AT_END_STRING) if end else (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING))
    if op is sre_c.SUBPATTERN:
        return _anchored(list(av[-1]), end)
    if op is sre_c.BRANCH:
        return all(_anchored(list(b), end) for b in av[1])
    return False


def _alternatives(seq: list) -> list[list]:
    """The top-level alternatives of a pattern (its first top-level BRANCH expanded with what surrounds it)."""
    for i, (op, av) in enumerate(seq):
        if op is sre_c.BRANCH:
            return [seq[:i] + list(b) + seq[i + 1 :] for b in av[1]]
    return [seq]


_NEVER = frozenset(["never"])  # marker: no alternative can have this edge char


@dataclass(frozen=True)
class Gate:
    """Necessary conditions for a pattern to match a string (:meth:`possible` False = it cannot match).

    ``by_edge`` maps the char a match must start with (``at_end`` False: the pattern is anchored at the string's
    start) or end with (``at_end`` True: anchored at its end) to the chars of which the string must then hold one
    (ALL: no such condition); chars absent from it cannot be that edge. Without anchoring, ``needed`` alone applies.
    """

    needed: CharSet
    by_edge: dict[str, CharSet] | None
    at_end: bool
    always: bool  # the pattern can match the empty string: no gate

    def possible(self, s: str) -> bool:
        if self.always or not s:
            return True
        if self.by_edge is not None:
            ch = s[-1] if self.at_end else s[0]
            if self.at_end and ch == "\n":  # `$` also matches before a final newline
                return True
            nd = self.by_edge.get(ch, _NEVER)
            if nd is _NEVER:
                return False
            return nd is ALL or not nd.isdisjoint(s)
        return self.needed is ALL or not self.needed.isdisjoint(s)


def pattern_gate(pattern: re.Pattern, anchored_start: bool = False) -> Gate:
    """The gate of a compiled pattern, from its parse tree (see the module docstring); ``anchored_start``: it is used
    through ``match``, which only matches at the string's start."""
    if pattern.flags & (re.IGNORECASE | re.MULTILINE) or not isinstance(pattern.pattern, str):
        return Gate(ALL, None, False, True)  # case folding / line anchors: the char analysis below does not hold
    tree = sre_parse.parse(pattern.pattern, pattern.flags)
    alts = [(alt, _needed(alt)) for alt in _alternatives(list(tree.data))]
    needed: CharSet = frozenset()
    for _, nd in alts:
        needed = _union(needed, nd)
    by_edge: dict[str, CharSet] | None = None
    at_end = all(_anchored(alt, end=True) for alt, _ in alts)
    if at_end or anchored_start or all(_anchored(alt, end=False) for alt, _ in alts):
        edges = [_edge(alt, last=at_end) for alt, _ in alts]
        if all(e is not ALL for e in edges):
            by_edge = {}
            unions: dict[tuple[int, int], CharSet] = {}  # chars share their set objects: no per-char copy
            for edge, (_, nd) in zip(edges, alts, strict=True):
                for ch in edge:
                    prev = by_edge.get(ch)
                    if prev is None or prev is nd:
                        by_edge[ch] = nd
                    else:
                        key = (id(prev), id(nd))
                        if key not in unions:
                            unions[key] = _union(prev, nd)
                        by_edge[ch] = unions[key]
    return Gate(needed, by_edge, at_end, tree.getwidth()[0] == 0)


_ANCHORS = {False: (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING), True: (sre_c.AT_END, sre_c.AT_END_STRING)}
_UNBOUNDED = sre_c.MAXREPEAT


def _reach(seq: list, at_end: bool) -> int | None:
    """Widest lookaround in ``seq`` (chars it may inspect beyond the match), or None when ``seq`` holds something
    the window argument of :func:`affix_window` does not cover (other anchors, unbounded lookarounds, references)."""
    widest = 0
    for op, av in seq:
        if op is sre_c.AT:
            if av not in _ANCHORS[at_end]:
                return None
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            width = sre_parse.SubPattern(sre_parse.State(), list(av[1])).getwidth()[1]
            inner = _reach(list(av[1]), at_end)
            if width >= _UNBOUNDED or inner is None:
                return None
            widest = max(widest, width + inner)
        elif op in (sre_c.SUBPATTERN, sre_c.BRANCH) or op in _REPEATS:
            subs = [list(av[-1])] if op is sre_c.SUBPATTERN else [list(b) for b in av[1]] if op is sre_c.BRANCH \
                else [list(av[2])]
            for sub in subs:
                inner = _reach(sub, at_end)
                if inner is None:
                    return None
                widest = max(widest, inner)
        elif op not in _SINGLE:
            return None
    return widest


@dataclass(frozen=True)
class AffixWindow:
    """How much of a string an anchored affix pattern can read: with ``chars`` = its widest bounded alternative plus
    its widest lookaround, a prefix (suffix) match on a string longer than ``chars`` is the same as on its first
    (last) ``chars`` chars, unless an unbounded alternative (``\\.\\.+``) can start (end) at its first (last) char,
    whose chars are ``unbounded_edge``."""

    chars: int
    unbounded_edge: CharSet


def affix_window(pattern: re.Pattern, at_end: bool) -> AffixWindow | None:
    """The window of a prefix (``at_end`` False) or suffix pattern, or None where the argument does not hold: an
    alternative not anchored at that end, other anchors, unbounded lookarounds, flags that change the analysis."""
    if pattern.flags & (re.IGNORECASE | re.MULTILINE) or not isinstance(pattern.pattern, str):
        return None
    alts = _alternatives(list(sre_parse.parse(pattern.pattern, pattern.flags).data))
    widest, reach, edge = 0, 0, frozenset()
    for alt in alts:
        r = _reach(alt, at_end)
        if r is None or not _anchored(alt, end=at_end):
            return None
        reach = max(reach, r)
        width = sre_parse.SubPattern(sre_parse.State(), alt).getwidth()[1]
        if width >= _UNBOUNDED:
            edge = _union(edge, _edge(alt, last=at_end))
        else:
            widest = max(widest, width)
    return AffixWindow(widest + reach, edge)


def _affix_length(fn: Callable | None, at_end: bool, memo_max: int = 1 << 18) -> Callable[[str], int]:
    """``len`` of ``fn(s)``'s match (spaCy's ``find_prefix``/``find_suffix``), gated, memoised on the window of
    :class:`AffixWindow` (affixes repeat far more than the strings around them)."""
    gated = _gated(fn)
    if fn is None:
        return lambda s: 0
    gate = _gate_of(fn)
    by_edge = gate.by_edge if gate is not None and not gate.always else None
    win = affix_window(fn.__self__, at_end) if isinstance(getattr(fn, "__self__", None), re.Pattern) else None
    if win is not None and win.unbounded_edge is ALL:
        win = None
    edge = -1 if at_end else 0
    memo: dict[str, int] = {}

    def length(s: str) -> int:
        if by_edge is not None and s and s[edge] not in by_edge and s[-1] != "\n":
            return 0  # no alternative can start (end) with this char: the common case, decided before any slicing
        if win is None or not s or "\n" in s or s[edge] in win.unbounded_edge:
            m = gated(s)
            return m.end() - m.start() if m is not None else 0
        key = s if len(s) <= win.chars else s[-win.chars :] if at_end else s[: win.chars]
        n = memo.get(key)
        if n is None:
            m = gated(key)
            n = m.end() - m.start() if m is not None else 0
            if len(memo) >= memo_max:
                memo.clear()
            memo[key] = n
        return n

    return length


def _gate_of(fn: Callable | None) -> Gate | None:
    """Gate of a bound ``search``/``match``/``finditer`` of a compiled pattern; None (no gate) for anything else."""
    pattern = getattr(fn, "__self__", None)
    if not isinstance(pattern, re.Pattern):
        return None
    return pattern_gate(pattern, anchored_start=fn.__name__ == "match")


def is_punct(text: str) -> bool:
    """spaCy's ``IS_PUNCT`` lexeme attribute (every char in a Unicode P* category)."""
    return all(unicodedata.category(c).startswith("P") for c in text)


_SPACE = re.compile(r"\s").search


def _gated(fn: Callable | None) -> Callable[[str], Any]:
    """``fn`` (a bound ``search``/``match``/``finditer``) behind its gate: None without calling it when the pattern
    provably cannot match (:meth:`Gate.possible`, inlined: this runs for every regex call)."""
    if fn is None:
        return lambda s: None
    g = _gate_of(fn)
    if g is None or g.always:
        return fn
    needed, by_edge, edge = g.needed, g.by_edge, -1 if g.at_end else 0

    if by_edge is None:
        if needed is ALL:
            return fn

        def call(s: str) -> Any:
            return None if s and needed.isdisjoint(s) else fn(s)

        return call

    def edge_call(s: str) -> Any:
        if s and not (edge == -1 and s[-1] == "\n"):
            nd = by_edge.get(s[edge], _NEVER)
            if nd is _NEVER or (nd is not ALL and nd.isdisjoint(s)):
                return None
        return fn(s)

    return edge_call


def _plain_chars_complement(fns: tuple[Callable | None, ...]) -> CharSet:
    """Chars at least one of which any match of any of ``fns`` needs; ALL when some regex has no such set."""
    out: CharSet = frozenset()
    for fn in fns:
        if fn is None:
            continue
        g = _gate_of(fn)
        if g is None or g.always:
            return ALL
        out = _union(out, g.needed)
    return out


class ChunkTokenizer:
    """spaCy's tokenizer on whitespace-free chunks, as token strings (see the module docstring)."""

    def __init__(self, tokenizer: Any):
        from spacy.attrs import ORTH  # heavy: deferred until used

        fns = (tokenizer.prefix_search, tokenizer.suffix_search, tokenizer.infix_finditer, tokenizer.token_match,
               tokenizer.url_match)  # fmt: skip
        self._prefix, self._suffix, self._infix, self._token, self._url = map(_gated, fns)
        self._prefix_len = _affix_length(tokenizer.prefix_search, at_end=False)
        self._suffix_len = _affix_length(tokenizer.suffix_search, at_end=True)
        self._core_memo: dict[str, tuple[str, ...]] = {}
        self.rules = {k: tuple(t.get(ORTH, t.get("ORTH")) for t in v) for k, v in tokenizer.rules.items()}
        self.patterns = self._matcher_patterns(tokenizer)
        self._pattern_starts = frozenset(self.patterns)
        # only a pattern that changes the tokens or spans 2+ tokens (and may keep a changing one from applying)
        # matters; these need their first token pair, or (one token) the token itself
        self._by_pair: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        for p in (p for ps in self.patterns.values() for p in ps if len(p) > 1):
            self._by_pair.setdefault(p[:2], []).append(p)
        self._pattern_pairs = frozenset(self._by_pair)
        self._changing_singles = frozenset(
            p[0] for ps in self.patterns.values() for p in ps if len(p) == 1 and self.rules["".join(p)] != p
        )
        self._plain = _plain_chars_complement(fns)

    def _one_token(self, chunk: str) -> bool:
        """True when no regex can match the chunk (no char any of them needs) and it is no special case: spaCy keeps
        it whole. Most words take this path and cost one set test."""
        return (self._plain is not ALL and self._plain.isdisjoint(chunk) and chunk not in self.rules
                and chunk not in self._pattern_starts)  # fmt: skip

    def _matcher_patterns(self, tokenizer: Any) -> dict[str, list[tuple[str, ...]]]:
        """spaCy's special-case matcher patterns by first token: the tokens (without special cases) of each case
        that has an affix, an infix or a space (every case when ``faster_heuristics`` is off), as spaCy adds them."""
        out: dict[str, list[tuple[str, ...]]] = {}
        fast = getattr(tokenizer, "faster_heuristics", True)
        for key in self.rules:
            if fast and not (tokenizer.find_prefix(key) or tokenizer.find_infix(key) or tokenizer.find_suffix(key)
                             or " " in key):  # fmt: skip
                continue
            pattern = tuple(self._affixes(key, {}))
            out.setdefault(pattern[0], []).append(pattern)
        return out

    def split(self, chunk: str) -> list[str] | None:
        """Tokens of one chunk exactly as spaCy makes them; None for text outside the port's domain (whitespace),
        which spaCy itself must tokenize."""
        if not chunk or _SPACE(chunk):
            return None
        if self._one_token(chunk):
            return [chunk]
        return self._special_cases(self._affixes(chunk, self.rules))

    def _special_cases(self, tokens: list[str]) -> list[str]:
        """``Tokenizer._apply_special_cases`` within one chunk: matches of the matcher patterns, longest first (then
        leftmost) unless their first or last token is taken, each replaced by its special case's tokens."""
        if self._changing_singles.isdisjoint(tokens) and (
            len(tokens) < 2 or self._pattern_pairs.isdisjoint(zip(tokens, tokens[1:], strict=False))
        ):
            return tokens
        spans = [(i, i + 1) for i, t in enumerate(tokens) if t in self._changing_singles]
        for i, pair in enumerate(zip(tokens, tokens[1:], strict=False)):
            for p in self._by_pair.get(pair, ()):
                if len(p) == 2 or tuple(tokens[i : i + len(p)]) == p:
                    spans.append((i, i + len(p)))
        if not spans:
            return tokens
        spans.sort(key=lambda sp: (sp[1] - sp[0], -sp[0]))  # len_start_cmp, walked from the end
        taken: set[int] = set()
        kept = []
        for a, b in reversed(spans):
            if a not in taken and b - 1 not in taken:
                kept.append((a, b))
            taken.update(range(a, b))
        out, i = [], 0
        for a, b in sorted(kept):
            out.extend(tokens[i:a])
            text = "".join(tokens[a:b])  # no whitespace inside a chunk: the span's text
            out.extend(self.rules.get(text, tokens[a:b]))
            i = b
        out.extend(tokens[i:])
        return out

    def _affixes(self, s: str, rules: dict[str, tuple[str, ...]]) -> list[str]:
        """``Tokenizer._tokenize``: ``_split_affixes`` then ``_attach_tokens`` (tokenizer.pyx, same order of tests);
        ``rules`` = the special cases (empty: spaCy's ``with_special_cases=False``)."""
        if s in rules:  # _try_specials_and_cache
            return list(rules[s])
        prefixes: list[str] = []
        suffixes: list[str] = []
        last = 0
        while s and len(s) != last:
            if self._token(s) or s in rules:
                break
            last = len(s)
            pre = self._prefix_len(s)
            if pre:
                prefix, minus_pre = s[:pre], s[pre:]
                if minus_pre and minus_pre in rules:
                    s = minus_pre
                    prefixes.append(prefix)
                    break
            suf = self._suffix_len(s[pre:]) if len(s) > pre else 0
            if suf:
                suffix, minus_suf = s[-suf:], s[:-suf]
                if minus_suf and minus_suf in rules:
                    s = minus_suf
                    suffixes.append(suffix)
                    break
            if pre and suf and pre + suf <= len(s):
                s = s[pre:-suf]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre:
                s = minus_pre
                prefixes.append(prefix)
            elif suf:
                s = minus_suf
                suffixes.append(suffix)
        tokens = prefixes
        if s:
            tokens.extend(self._core(s, rules))
        tokens.extend(reversed(suffixes))
        return tokens

    def _core(self, s: str, rules: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        """``_attach_tokens`` on what the affix loop left: a special case, a token/URL match, or the infix split;
        memoised (with the special cases on) because cores repeat across chunks."""
        if not rules:
            return self._attach(s, rules)
        out = self._core_memo.get(s)
        if out is None:
            out = self._attach(s, rules)
            if len(self._core_memo) >= 1 << 18:
                self._core_memo.clear()
            self._core_memo[s] = out
        return out

    def _attach(self, s: str, rules: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        if s in rules:
            return tuple(rules[s])
        if self._token(s) or self._url(s):
            return (s,)
        return self._infixes(s)

    def _infixes(self, s: str) -> tuple[str, ...]:
        matches = self._infix(s)
        if matches is None:
            return (s,)
        out, start = [], 0
        for m in matches:
            a, b = m.start(), m.end()
            if a == 0:  # infix_start == start_before_infixes
                continue
            if a != start:
                out.append(s[start:a])
            if a != b:
                out.append(s[a:b])
            start = b
        if s[start:]:
            out.append(s[start:])
        return tuple(out)


@lru_cache(1)
def english_chunk_tokenizer() -> ChunkTokenizer:
    """The port bound to datatrove's word tokenizer (spaCy ``blank("en")``)."""
    import spacy  # heavy: deferred until used

    return ChunkTokenizer(spacy.blank("en").tokenizer)
