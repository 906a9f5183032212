"""Extend an existing Hugging Face tokenizer with domain tokens, keeping every existing id.

New tokens are Hugging Face *added tokens*: they are matched in the raw text (leftmost-longest) before the model runs,
and the pieces between matches are tokenized exactly as before. So ids never move, and any text that contains none of
the new strings encodes exactly as it did. Candidates come from a byte-level BPE trained on a sample of the domain
(or frequent pre-token n-grams); a lazy greedy picks, one at a time, the candidate that saves the most tokens on the
sample given the ones already picked, measured by re-tokenizing the affected paragraphs. The final savings are
measured again with the real extended tokenizer on the sample and on the held-out domain documents.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import regex
from tokenizers import AddedToken

from curation.tokenizer.builders import GPT4_PATTERN, build_tokenizer
from curation.tokenizer.config import TokenizerExtendConfig, TokenizerExtendError, TokenizerTrainConfig
from curation.tokenizer.data import iter_rows, manifest_hash, shard_paths
from tokenwise.log import kv
from tokenwise.rundir import write_json
from tokenwise.tokenizer_specs import HFTokenizer, load_tokenizer

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------- cost model


class SegmentCost:
    """Token cost of paragraphs under the base model plus a set of added strings (HF's leftmost-longest split)."""

    def __init__(self, base: Any, paragraphs: list[str], fixed: list[str]):
        self.base, self.paras, self.added = base, paragraphs, list(fixed)
        self._memo: dict[str, int] = {}
        self.cost = self.costs(paragraphs, self.added)

    def _base_len(self, pieces: list[str]) -> list[int]:
        todo = [p for p in set(pieces) if p not in self._memo]
        if todo:
            for p, enc in zip(todo, self.base.encode_batch_fast(todo, add_special_tokens=False), strict=True):
                self._memo[p] = len(enc.ids)
        return [self._memo[p] for p in pieces]

    def costs(self, texts: list[str], added: list[str]) -> list[int]:
        """Tokens for each text when ``added`` strings are cut out first (one token each)."""
        if not added:
            return self._base_len(texts)
        pat = re.compile("|".join(re.escape(a) for a in sorted(added, key=len, reverse=True)))
        out = []
        for t in texts:
            pieces, n, last = [], 0, 0
            for m in pat.finditer(t):
                if m.start() > last:
                    pieces.append(t[last : m.start()])
                n, last = n + 1, m.end()
            if last < len(t):
                pieces.append(t[last:])
            out.append(n + sum(self._base_len(pieces)))
        return out

    def gain(self, s: str) -> tuple[int, list[int], list[int]]:
        """Tokens saved on the sample by adding ``s`` now; with the affected paragraph indices and their new costs."""
        idx = [i for i, p in enumerate(self.paras) if s in p]
        new = self.costs([self.paras[i] for i in idx], [*self.added, s])
        return sum(self.cost[i] for i in idx) - sum(new), idx, new

    def accept(self, s: str, idx: list[int], new: list[int]) -> None:
        self.added.append(s)
        for i, c in zip(idx, new, strict=True):
            self.cost[i] = c


def paragraphs(texts: list[str]) -> list[str]:
    """Split at blank lines (kept with the paragraph before) so a candidate re-tokenizes only where it occurs."""
    out = []
    for t in texts:
        out.extend(p for p in re.split(r"(?<=\n\n)", t) if p)
    return out


# --------------------------------------------------------------------------------------------------------- candidates


def bpe_candidates(texts: list[str], cfg: TokenizerExtendConfig) -> Counter[str]:
    """Strings a byte-level BPE trained on the domain sample learned, with how often they occur in the sample."""
    tcfg = TokenizerTrainConfig(
        name="candidates",
        vocab_size=cfg.candidate_vocab,
        special_tokens=[],
        eos_token=None,
        pad_token=None,
        min_frequency=2,
    )
    tok, trainer = build_tokenizer(tcfg)
    tok.train_from_iterator(texts, trainer=trainer)
    counts: Counter[str] = Counter()
    for enc in tok.encode_batch_fast(texts, add_special_tokens=False):
        counts.update(enc.ids)
    return Counter({tok.decode([i]): c for i, c in counts.items()})


def ngram_candidates(texts: list[str], n_max: int = 3) -> Counter[str]:
    """Runs of 1..n_max consecutive GPT-4 pre-tokens, with their counts."""


    pat, counts = regex.compile(GPT4_PATTERN), Counter()
    for t in texts:
        pieces = pat.findall(t)
        for n in range(1, n_max + 1):
            counts.update("".join(pieces[i : i + n]) for i in range(len(pieces) - n + 1))
    return counts


def shortlist(counts: Counter[str], base: Any, cfg: TokenizerExtendConfig) -> list[tuple[float, str]]:
    """Candidates that the base spends ≥2 tokens on, ranked by estimated savings count × (base tokens - 1)."""
    pool = [
        s
        for s, c in counts.most_common(cfg.max_candidates * 4)
        if c >= 2 and 2 <= len(s) <= cfg.max_token_chars and "\ufffd" not in s and s.strip()
    ]
    lens = [len(e.ids) for e in base.encode_batch_fast(pool, add_special_tokens=False)]
    est = [(counts[s] * (n - 1), s) for s, n in zip(pool, lens, strict=True) if n >= 2]
    return sorted(est, reverse=True)[: cfg.max_candidates]


def greedy_select(cost: SegmentCost, ranked: list[tuple[float, str]], cfg: TokenizerExtendConfig) -> list[dict]:
    """Lazy greedy: re-measure the best-estimated candidate; take it if it still beats every other estimate."""
    heap = [(-est, s) for est, s in ranked]
    heapq.heapify(heap)
    picked: list[dict] = []
    while heap and len(picked) < cfg.max_new_tokens:
        neg, s = heapq.heappop(heap)
        if -neg < cfg.min_saved:
            break
        g, idx, new = cost.gain(s)
        if heap and g < -heap[0][0]:
            heapq.heappush(heap, (-g, s))  # stale estimate: re-queue with the measured gain
            continue
        if g < cfg.min_saved:
            break
        cost.accept(s, idx, new)
        picked.append({"token": s, "tokens_saved": int(g)})
    return picked


# --------------------------------------------------------------------------------------------------------- extend


def load_base(spec: str, run_dir: str) -> tuple[Any, Path]:
    """The base as (transformers fast tokenizer, its directory or file); tiktoken encodings cannot be extended."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # heavy: deferred until used


    counter = load_tokenizer(spec, run_dir)  # raises TokenizerSpecError naming a bad path
    if not isinstance(counter, HFTokenizer):
        raise TokenizerExtendError(f"{spec}: only Hugging Face tokenizers (hf:, run:) can be extended, not tiktoken")
    kind, _, rest = spec.partition(":")
    where = {"run": Path(run_dir) / "tokenizers", "model": Path(run_dir) / "models"}
    path = where[kind] / rest if kind in where else Path(rest if kind == "hf" else spec)
    if path.is_dir() and (path / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(path)), path
    return PreTrainedTokenizerFast(tokenizer_object=counter.tok, clean_up_tokenization_spaces=False), path


def domain_texts(
    shards: list[str], cfg: TokenizerExtendConfig, heldout: bool, max_chars: int, others: bool = False
) -> list[str]:
    """Up to ``max_chars`` of the configured domains' documents (``others``: of every other domain instead) from the
    training or held-out split."""
    out, n = [], 0
    for b in iter_rows(shards, heldout=heldout, columns=("lang", "domain", "text")):
        for lang, dom, text in zip(b["lang"], b["domain"], b["text"], strict=True):
            if (dom in cfg.domains) != others and (not cfg.languages or lang in cfg.languages) and text:
                text = text[: cfg.max_doc_chars] if cfg.max_doc_chars else text
                out.append(text)
                n += len(text)
                if n >= max_chars:
                    return out
    return out


def _encode(tok: Any, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]


def _count(tok: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in _encode(tok, texts)]


def verify(old: Any, new: Any, added: list[str], texts: list[str]) -> dict[str, Any]:
    """Old ids unchanged; texts without any new string encode identically; every text round-trips as before."""
    old_vocab, new_vocab = old.get_vocab(with_added_tokens=True), new.get_vocab(with_added_tokens=True)
    moved = [t for t, i in old_vocab.items() if new_vocab.get(t) != i]
    plain = [t for t in texts if not any(a in t for a in added)]
    a, b = _encode(old, plain), _encode(new, plain)
    changed = sum(x != y for x, y in zip(a, b, strict=True))
    rt_old = sum(old.decode(ids) != t for ids, t in zip(_encode(old, texts), texts, strict=True))
    rt_new = sum(new.decode(ids) != t for ids, t in zip(_encode(new, texts), texts, strict=True))
    return {
        "ids_moved": len(moved),
        "texts_without_new_tokens": len(plain),
        "encodings_changed": int(changed),
        "roundtrip_failures_before": int(rt_old),
        "roundtrip_failures_after": int(rt_new),
    }


def extend(cfg: TokenizerExtendConfig, run_dir: str, source: str = "curated") -> dict[str, Any]:
    """Pick domain tokens by measured savings, add them to the base, save ``<run>/tokenizers/<name>/``; return meta."""


    t0 = time.perf_counter()
    fast, base_path = load_base(cfg.base, run_dir)
    shards = shard_paths(run_dir, source)
    texts = domain_texts(shards, cfg, heldout=False, max_chars=cfg.sample_chars) if shards else []
    if not texts:
        raise TokenizerExtendError(f"{cfg.name}: empty corpus: no training documents in domains {cfg.domains}")
    base = fast.backend_tokenizer
    fixed = [t.content for t in base.get_added_tokens_decoder().values()]
    counts = bpe_candidates(texts, cfg) if cfg.candidates == "bpe" else ngram_candidates(texts)
    ranked = shortlist(counts, base, cfg)
    cost = SegmentCost(base, paragraphs(texts), fixed)
    before = sum(cost.cost)
    picked = greedy_select(cost, ranked, cfg)
    old = type(base).from_str(base.to_str())
    n_before = len(fast)
    fast.add_tokens([AddedToken(p["token"], normalized=False, special=False) for p in picked])
    new = fast.backend_tokenizer
    cum = 0
    for p in picked:
        cum += p["tokens_saved"]
        p["id"], p["cumulative_saved"] = new.token_to_id(p["token"]), cum
    heldout = domain_texts(shards, cfg, heldout=True, max_chars=cfg.sample_chars)
    other = domain_texts(shards, cfg, heldout=True, max_chars=cfg.sample_chars // 4, others=True)
    meta = {
        "name": cfg.name,
        "spec": f"run:{cfg.name}",
        "base": cfg.base,
        "config": cfg.model_dump(mode="json"),
        "base_vocab_size": n_before,
        "vocab_size": len(fast),
        "added": picked,
        "manifest_hash": manifest_hash(shards),
        "sample": _savings(old, new, texts) | {"predicted_before": before, "predicted_after": sum(cost.cost)},
        "heldout": _savings(old, new, heldout) if heldout else None,
        "checks": verify(old, new, [p["token"] for p in picked], texts + heldout + other),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _save(fast, Path(run_dir) / "tokenizers" / cfg.name, meta)
    log.info("extended %s", kv(name=cfg.name, base=cfg.base, added=len(picked), saved_sample=meta["sample"]["saved"]))
    return meta


def _savings(old: Any, new: Any, texts: list[str]) -> dict[str, Any]:
    a, b = sum(_count(old, texts)), sum(_count(new, texts))
    return {
        "documents": len(texts),
        "chars": sum(map(len, texts)),
        "tokens_before": a,
        "tokens_after": b,
        "saved": round(1 - b / max(a, 1), 4),
    }


def _save(fast: Any, out: Path, meta: dict[str, Any]) -> None:


    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fast.save_pretrained(str(tmp))
        write_json(tmp / "meta.json", meta)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
