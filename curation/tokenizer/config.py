"""The ``tokenizer:`` config section: tokenizers to train, extensions to make, and how to evaluate them."""

from __future__ import annotations

import operator
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tokenwise.config import BaseConfig, load_section

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class TokenizerTrainError(ValueError):
    """Bad training input found before training starts (empty corpus, plan language without data, ...)."""


class ParityConfig(BaseConfig):
    """Parity-aware BPE (``model: parity_bpe``): each merge goes to the language worst compressed on a dev set."""

    dev: str = Field(
        "split",
        description="Parallel dev set: 'split' = training units hashed into the dev share (left out of training), "
        "or a parallel JSONL path (one column per language, or rows with unit_id + lang + text).",
    )
    dev_fraction: float = Field(
        0.05, gt=0.0, le=0.5, description="Share of units held for the dev set (more = steadier parity, less data)."
    )
    target_premium: float = Field(
        1.0,
        ge=1.0,
        le=5.0,
        description="Premium vs English the merges balance the dev set to: 1 = equal cost (the paper); higher gives "
        "English merges earlier (English cheaper, other languages up to this premium).",
    )
    global_merges: float = Field(
        0.0, ge=0.0, le=1.0, description="Hybrid variant: this share of merges by global frequency first (as bpe)."
    )
    window: int = Field(
        0, ge=0, le=100_000, description="Moving-window variant: at most alpha/languages of the last N merges per "
        "language (a language out of useful pairs cannot take every merge); 0 = off.",
    )
    alpha: float = Field(2.0, gt=0.0, description="Moving-window share: alpha / languages of the window per language.")


class TokenizerTrainConfig(BaseConfig):
    """One tokenizer to train; ``tokenwise tokenizer train`` trains every entry of ``tokenizer.train``."""

    name: str = Field(..., pattern=NAME_RE, description="Output dir name under <run>/tokenizers/; spec run:NAME.")
    model: Literal["bpe", "unigram", "parity_bpe"] = Field(
        "bpe",
        description="BPE merges (fast), Unigram LM (slower), or parity-aware BPE (merges balanced across languages "
        "on a parallel dev set; Python trainer, ~10x the time of bpe).",
    )
    parity: ParityConfig = Field(default_factory=ParityConfig, description="Parity-aware BPE knobs (parity_bpe only).")
    vocab_size: int = Field(16000, ge=64, le=1_000_000, description="Final size incl. alphabet and special tokens.")
    special_tokens: list[str] = Field(["<|endoftext|>", "<|pad|>"], description="Control tokens, ids 0..n-1.")
    bos_token: str | None = Field(None, description="Beginning-of-sequence token (must be in special_tokens).")
    eos_token: str | None = Field("<|endoftext|>", description="End-of-sequence token (must be in special_tokens).")
    pad_token: str | None = Field("<|pad|>", description="Padding token (must be in special_tokens).")
    unk_token: str | None = Field(None, description="Unknown token; needed for metaspace (byte-level never needs it).")
    normalization: Literal["none", "nfc", "nfkc"] = Field(
        "none", description="Unicode normalization; anything but none breaks exact round trip of unnormalized text."
    )
    pre_tokenization: Literal["gpt4_byte_level", "gpt2_byte_level", "line_byte_level", "metaspace"] = Field(
        "gpt4_byte_level",
        description="Byte-level (any text round-trips): gpt4/gpt2 regex split words; line lets tokens span words "
        "within a line (superword tokens: fewer tokens on code and prose, slower training). Metaspace: chars + unk.",
    )
    plan: str | None = Field(None, description="Plan name in <run>/plans/ or a path to a plan JSON.")
    temperature: float = Field(
        1.0, ge=1.0, le=100.0, description="Without a plan: language weight ∝ chars^(1/T); 1 = as found, 5 ≈ flat."
    )
    on_missing_language: Literal["error", "skip"] = Field(
        "error", description="A plan language without training data: stop (error) or drop it and log (skip)."
    )
    languages: list[str] | None = Field(None, description="Only these locales (default: all in the plan/corpus).")
    domains: list[str] | None = Field(None, description="Only these domains (ui, code, docs); default all.")
    sample_chars: int = Field(20_000_000, ge=1000, description="Characters fed to the trainer (split by the plan).")
    max_epochs: float = Field(
        4.0, gt=0, description="Cap on repeats of a language's text; repeats only re-weight BPE counts, cost time."
    )
    max_doc_chars: int = Field(20_000, ge=100, description="Longer documents are cut (bounds one batch's memory).")
    min_frequency: int = Field(2, ge=1, description="BPE: a merge needs this many occurrences.")
    limit_alphabet: int = Field(1000, ge=32, description="Metaspace: keep this many most frequent characters.")
    seed: int = Field(0, description="Sampling seed.")

    @field_validator("special_tokens")
    @classmethod
    def _specials_distinct(cls, v: list[str]) -> list[str]:
        if any(not s or not s.strip() for s in v):
            raise ValueError(f"special tokens must be non-empty and not only whitespace; got {v}")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"conflicting special tokens: {dup} listed more than once")
        return v

    @model_validator(mode="after")
    def _roles_listed(self) -> TokenizerTrainConfig:
        for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
            tok = getattr(self, role)
            if tok is not None and tok not in self.special_tokens:
                raise ValueError(f"conflicting special tokens: {role}={tok!r} is not in special_tokens; add it there")
        if self.pre_tokenization == "metaspace" and self.unk_token is None:
            raise ValueError("metaspace pre-tokenization needs unk_token (e.g. '<unk>' also in special_tokens)")
        if self.model == "parity_bpe" and self.pre_tokenization == "metaspace":
            raise ValueError("model parity_bpe is byte-level: use a *_byte_level pre_tokenization, not metaspace")
        return self

    def min_vocab(self) -> int:
        """Smallest vocab that holds the byte alphabet and the special tokens (metaspace: checked on data)."""
        return (256 if self.pre_tokenization != "metaspace" else 0) + len(self.special_tokens) + 1


class TokenizerExtendError(ValueError):
    """A base tokenizer that cannot be extended, or a domain without data."""


class TokenizerExtendConfig(BaseConfig):
    """Add domain tokens to an existing tokenizer (``tokenizer.extend`` entries)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Output <run>/tokenizers/<name>/.")
    base: str = Field(..., description="Tokenizer to extend: hf:/path (dir or tokenizer.json) or run:NAME.")
    domains: list[str] = Field(["code"], min_length=1, description="Domains whose documents define the savings.")
    languages: list[str] | None = Field(None, description="Only these locales (default: all).")
    max_new_tokens: int = Field(
        256, ge=1, le=50_000, description="At most this many additions (each costs an embedding row)."
    )
    min_saved: int = Field(
        4, ge=1, description="Stop when the best addition saves fewer tokens than this on the sample."
    )
    candidates: Literal["bpe", "ngrams"] = Field("bpe", description="Candidate strings: domain BPE vocab or n-grams.")
    candidate_vocab: int = Field(8000, ge=300, description="Vocab of the domain BPE that proposes candidates.")
    max_candidates: int = Field(3000, ge=10, description="Candidates kept for the greedy (by estimated savings).")
    max_token_chars: int = Field(32, ge=2, description="Longest candidate string.")
    sample_chars: int = Field(1_000_000, ge=1000, description="Domain characters measured (memory and time ∝ this).")
    max_doc_chars: int | None = Field(
        None, ge=100, description="Cap per document in the sample (None = whole documents): spreads a small sample "
        "over more documents instead of a few huge files."
    )
    seed: int = 0


GATE_RE = re.compile(
    r"^\s*(?:(?P<tok>[A-Za-z0-9_.-]+):)?(?P<metric>[A-Za-z0-9_]+)\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<value>-?[0-9.]+(?:e-?[0-9]+)?)\s*$"
)
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


class TokenizerEvalError(ValueError):
    """Bad evaluation input (no held-out data, unloadable tokenizer, malformed gate)."""


class TokenizerEvalConfig(BaseConfig):
    """How ``tokenwise tokenizer eval`` measures tokenizers (``tokenizer.eval`` section)."""

    tokenizers: list[str] = Field(default_factory=list, description="Candidate specs (run:NAME, hf:DIR); gated.")
    references: list[str] = Field(
        ["tiktoken:cl100k_base", "tiktoken:o200k_base"], description="Baselines; savings are reported vs each."
    )
    reference: str = Field("tiktoken:cl100k_base", description="Spec whose length normalizes sequence length (NSL).")
    languages: list[str] | None = Field(None, description="Only these locales (default: all held-out languages).")
    domains: list[str] | None = Field(None, description="Only these domains (default: all).")
    max_docs_per_group: int = Field(
        2000, ge=1, description="Held-out documents per language × domain, sampled by unit (speed vs CI width)."
    )
    min_units: int = Field(
        30, ge=1, description="A language with fewer parallel units is flagged few_units (wide CI), never dropped."
    )
    bootstrap: int = Field(200, ge=10, le=10_000, description="Bootstrap resamples for the 95% intervals.")
    alpha: float = Field(2.5, ge=1.01, le=10.0, description="Rényi order; Zouhar et al. 2023 found 2.5-3 predictive.")
    invalid_unk_rate: float = Field(
        0.10, ge=0.0, le=1.0, description="Pairs above this unk/byte-fallback rate are invalid."
    )
    throughput_chars: int = Field(500_000, ge=1000, description="Held-out characters timed for encode MB/s.")
    fail_if: list[str] = Field(
        default_factory=list, description="Gates like 'premium_max>2.0' or 'multi16k:unk_rate_max>0'."
    )
    examples: int = Field(3, ge=0, le=50, description="Round-trip failures shown per tokenizer.")
    seed: int = 0

    @field_validator("fail_if")
    @classmethod
    def _gates_parse(cls, v: list[str]) -> list[str]:
        for g in v:
            parse_gate(g)
        return v


def parse_gate(gate: str) -> tuple[str | None, str, str, float]:
    """``[tokenizer:]metric OP value`` -> (tokenizer or None, metric, op, value); the gate fails when true."""
    m = GATE_RE.match(gate)
    if not m:
        raise ValueError(f"gate {gate!r}: expected [tokenizer:]metric OP number, e.g. 'premium_max>2.0'")
    return m["tok"], m["metric"], m["op"], float(m["value"])


class TokenizerSection(BaseConfig):
    """The ``tokenizer:`` config section: tokenizers to train, extensions to make, and how to evaluate them."""

    source: str = Field("curated", description="Stage dir (or a path) holding shard-*.parquet to train and eval on.")
    train: list[TokenizerTrainConfig] = Field(default_factory=list, description="Tokenizers to train.")
    extend: list[TokenizerExtendConfig] = Field(default_factory=list, description="Extensions with domain tokens.")
    eval: TokenizerEvalConfig = Field(default_factory=TokenizerEvalConfig, description="How to evaluate them.")

    @model_validator(mode="after")
    def _unique_names(self) -> TokenizerSection:
        names = [t.name for t in self.train] + [e.name for e in self.extend]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tokenizer names must be unique across train and extend; repeated: {dup}")
        return self


def load_tokenizer_section(config_path: str) -> TokenizerSection:
    """Load and validate the ``tokenizer:`` section of a config file."""
    return load_section(config_path, "tokenizer", TokenizerSection)
