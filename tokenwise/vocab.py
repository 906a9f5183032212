"""A kept vocabulary: the subset of a tokenizer's ids a compact model (or a drafter) embeds and predicts.

A model trained or trimmed to a kept vocabulary works in *local* ids (position in :attr:`KeptVocab.ids`); everything
around it (tokenizer, engine, API) speaks the tokenizer's *global* ids. A token outside the kept set is **respelled**:
replaced by kept tokens that decode to the same text (longest kept pieces of its string, else its UTF-8 bytes as the
tokenizer's byte tokens), so any text stays representable and bits per byte stay comparable. The file
``kept_vocab.json`` next to a model's weights marks its dir as local-vocabulary; it is shared by the compaction stage
(``serving.quantize.compact``), draft training (``finetune.pretrain``) and model loading (``serving.models``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEPT_VOCAB_FILE = "kept_vocab.json"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet of byte-level BPE vocabularies)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def byte_token_ids(tokenizer: Any) -> dict[int, int]:
    """byte value -> id of the tokenizer's token for that single byte (``<0x41>`` byte fallback, or byte-level BPE)."""
    vocab = tokenizer.get_vocab()
    out = {b: vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab}
    if len(out) < 256:  # byte-level BPE (GPT-2 style): every byte is a one-character token of its alphabet
        for b, ch in bytes_to_unicode().items():
            if ch in vocab:
                out.setdefault(b, vocab[ch])
    return out


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, PAD, UNK ... and added special tokens)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None:
            ids.add(int(tid))
    return ids


@dataclass
class KeptVocab:
    """Kept global ids in local order, the tokenizer's vocabulary size and how out-of-set ids are respelled."""

    ids: list[int]
    vocab_size: int
    unk: int  # global id an unknown input falls back to (kept)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.local = {g: i for i, g in enumerate(self.ids)}
        if len(self.local) != len(self.ids):
            raise ValueError("kept vocabulary ids must be unique")
        if self.unk not in self.local:
            raise ValueError(f"unk id {self.unk} must be kept")
        self._spell: dict[int, list[int]] = {}
        self._tokenizer: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, gid: int) -> bool:
        return gid in self.local

    # ---- files -----------------------------------------------------------------------------------------------
    def save(self, model_dir: str | Path) -> Path:
        """Write ``kept_vocab.json`` into a model dir (plain write: the caller writes the dir atomically)."""
        path = Path(model_dir) / KEPT_VOCAB_FILE
        data = {"vocab_size": self.vocab_size, "unk": self.unk, "meta": self.meta, "ids": self.ids}
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> KeptVocab:
        """From ``kept_vocab.json`` or the model dir holding it."""
        p = Path(path)
        p = p / KEPT_VOCAB_FILE if p.is_dir() else p
        data = json.loads(p.read_text(encoding="utf-8"))
        return cls(list(data["ids"]), int(data["vocab_size"]), int(data["unk"]), data.get("meta") or {})

    @staticmethod
    def find(model_dir: str | Path) -> KeptVocab | None:
        """The kept vocabulary of a model dir, or None for a full-vocabulary model."""
        p = Path(model_dir) / KEPT_VOCAB_FILE
        return KeptVocab.load(p) if p.is_file() else None

    # ---- ids -------------------------------------------------------------------------------------------------
    def to_local(self, ids: Iterable[int]) -> list[int]:
        """Local ids of global ids that are kept (an id outside the set maps to the unk row: respell first)."""
        unk = self.local[self.unk]
        return [self.local.get(int(g), unk) for g in ids]

    def lookup_table(self) -> list[int]:
        """global id -> local id for every global id (unk row for ids outside the set); index with a tensor."""
        unk = self.local[self.unk]
        table = [unk] * self.vocab_size
        for g, i in self.local.items():
            table[g] = i
        return table

    def top(self, n: int, tokenizer: Any) -> KeptVocab:
        """The ``n`` most frequent kept ids (the frequency-ranked head of :attr:`ids`) plus every special and byte
        token still kept, so the smaller set can respell anything too (a drafter's vocabulary)."""
        ranked = self.ids[: min(n, self.meta.get("n_frequent", len(self.ids)))]
        forced = [g for g in (*sorted(special_ids(tokenizer)), *sorted(byte_token_ids(tokenizer).values()), self.unk)
                  if g in self.local]  # fmt: skip
        ids = list(dict.fromkeys([*ranked, *forced]))
        return KeptVocab(ids, self.vocab_size, self.unk, {**self.meta, "n_frequent": len(ranked), "top": n})

    def attach(self, tokenizer: Any) -> KeptVocab:
        """Remember the tokenizer used to respell out-of-set tokens."""
        self._tokenizer = tokenizer
        return self

    def respell(self, ids: Sequence[int], tokenizer: Any | None = None) -> list[int]:
        """``ids`` with every out-of-set token replaced by kept tokens that decode to the same text."""
        tok = tokenizer or self._tokenizer
        out: list[int] = []
        for g in ids:
            if g in self.local:
                out.append(int(g))
            else:
                out.extend(self.spelling(int(g), tok))
        return out

    def spelling(self, gid: int, tokenizer: Any) -> list[int]:
        """Kept ids spelling one out-of-set token: longest kept pieces of its string, then byte tokens."""
        if gid not in self._spell:
            if tokenizer is None:
                raise ValueError(f"token {gid} is outside the kept vocabulary; respelling it needs the tokenizer")
            self._spell[gid] = self._spell_token(gid, tokenizer)
        return self._spell[gid]

    def _spell_token(self, gid: int, tokenizer: Any) -> list[int]:
        if not hasattr(self, "_kept_str"):
            toks = tokenizer.convert_ids_to_tokens(self.ids)
            self._kept_str = {t: g for t, g in zip(toks, self.ids, strict=True) if t is not None}
            self._max_len = max(map(len, self._kept_str))
            self._bytes = {b: g for b, g in byte_token_ids(tokenizer).items() if g in self.local}
        s = tokenizer.convert_ids_to_tokens([gid])[0] or ""
        text = tokenizer.decode([gid])
        out, i = [], 0
        while i < len(s):
            for j in range(min(len(s), i + self._max_len), i, -1):
                if s[i:j] in self._kept_str:
                    out.append(self._kept_str[s[i:j]])
                    i = j
                    break
            else:
                out.extend(self._byte_ids(s[i], tokenizer))
                i += 1
        if tokenizer.decode(out) != text:  # the string form did not round-trip: spell the decoded text's bytes
            out = [i for ch in text for i in self._byte_ids(ch, tokenizer)]
        return out

    def _byte_ids(self, ch: str, tokenizer: Any) -> list[int]:
        ch = " " if ch == "\u2581" else ch  # SentencePiece's word-boundary mark is a space
        try:
            return [self._bytes[b] for b in ch.encode("utf-8")]
        except KeyError as e:
            raise ValueError(
                f"cannot respell {ch!r}: byte {e} has no kept byte token; keep the tokenizer's byte tokens"
            ) from e


def select_kept(
    counts: dict[int, int], tokenizer: Any, coverage: float, always: Iterable[int] = (), forced: bool = True
) -> list[int]:
    """Global ids to keep: the most frequent tokens up to ``coverage`` of all counted tokens (most frequent first),
    then every special token, every byte token (so anything can be respelled) and ``always``."""
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no tokens counted: the corpus sample for the kept vocabulary is empty")
    kept, running = [], 0
    for gid, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if running >= coverage * total:
            break
        kept.append(gid)
        running += n
    if not forced:
        return kept
    extra = [*sorted(special_ids(tokenizer)), *sorted(byte_token_ids(tokenizer).values()), *always]
    seen = set(kept)
    return kept + [g for g in dict.fromkeys(extra) if g not in seen]


class LocalTokenizer:
    """A tokenizer that returns local ids of a kept vocabulary (out-of-set tokens respelled).

    What training and bits-per-byte code needs from a tokenizer: ``tok(text, add_special_tokens=False)``,
    ``len(tok)``, the BOS/EOS/PAD ids, ``decode`` and ``save_pretrained`` (which also writes ``kept_vocab.json``).
    """

    def __init__(self, tokenizer: Any, kept: KeptVocab):
        self.tok, self.kept = tokenizer, kept.attach(tokenizer)
        self.name_or_path = getattr(tokenizer, "name_or_path", "")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
            gid = getattr(tokenizer, name, None)
            setattr(self, name, kept.local[gid] if gid is not None and gid in kept.local else None)

    def __len__(self) -> int:
        return len(self.kept)

    def __call__(self, text: str, add_special_tokens: bool = False, **_: Any) -> dict[str, list[int]]:
        ids = self.tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        return {"input_ids": self.kept.to_local(self.kept.respell(ids))}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, local_ids: Sequence[int], **kw: Any) -> str:
        return self.tok.decode([self.kept.ids[i] for i in local_ids], **kw)

    def save_pretrained(self, out: str | Path) -> None:
        self.tok.save_pretrained(str(out))
        self.kept.save(out)


class RespellingTokenizer:
    """A tokenizer whose ``encode`` returns global ids respelled into a kept vocabulary (what a local-vocabulary model
    served through global ids can score and continue); everything else is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Any, kept: KeptVocab):
        self._tok, self.kept = tokenizer, kept.attach(tokenizer)

    def encode(self, text: str, add_special_tokens: bool = False, **kw: Any) -> list[int]:
        return self.kept.respell(self._tok.encode(text, add_special_tokens=add_special_tokens, **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)
