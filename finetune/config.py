"""Configs of the fine-tuning stages: ``pretrain`` (small Llama models from scratch), ``lora`` and ``adapt``.

Each is a pydantic model loaded from one YAML section; bounds are checked at load time so a bad value fails before a
model is built. Paths may use ``run:NAME`` to point inside the run directory (``run:target`` -> ``<run>/models/target``
for models, ``<run>/tokenizers/NAME`` for tokenizers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tokenwise.config import BaseConfig


class DataConfig(BaseConfig):
    """Which curated documents a model trains and evaluates on, and how they are packed."""

    curated: str = Field("run:curated", description="Curated Parquet dir; run:curated is <run>/curated.")
    plan: str | None = Field(None, description="Sampling plan name (<run>/plans/NAME.json) weighting languages.")
    domains: list[str] | None = Field(None, description="Keep only these domains (ui, code, docs); None keeps all.")
    langs: list[str] | None = Field(None, description="Keep only these languages; None keeps all (or the plan's).")
    seq_len: int = Field(256, ge=8, le=131072, description="Tokens per packed training sequence.")
    eval_docs: int = Field(200, ge=1, description="Held-out documents used for eval loss and bits per byte.")
    eval_sample: Literal["spread", "first"] = Field(
        "spread", description="spread: smallest id hashes, equal share per domain; first: first in shard order."
    )
    eval_max_chars: int | None = Field(4000, ge=1, description="Cut each eval document to this many characters.")
    mix_shards: int = Field(64, ge=1, description="Training shards read interleaved at once (shards hold one source).")
    max_train_docs: int | None = Field(None, ge=1, description="Cap on training documents read per pass.")


class ModelSpec(BaseConfig):
    """One Llama model trained from scratch: shape, budget and optional distillation."""

    name: str = Field(..., description="Output dir name under <run>/models/.")
    hidden_size: int = Field(..., ge=8, description="Model width; cost grows ~quadratically.")
    layers: int = Field(..., ge=1, description="Transformer blocks; cost grows linearly.")
    heads: int = Field(..., ge=1, description="Attention heads; hidden_size must divide by it.")
    kv_heads: int | None = Field(None, ge=1, description="Grouped-query KV heads (None = heads).")
    intermediate_size: int = Field(..., ge=8, description="MLP width (Llama uses ~2.7x hidden).")
    tie_embeddings: bool = Field(True, description="Share input embedding and LM head (fewer params).")
    steps: int = Field(200, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Packed sequences per step.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (cosine decay after warmup).")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    tokenizer: str | None = Field(
        None, description="This model's tokenizer (run:NAME or a dir); None = the section's tokenizer."
    )
    vocab: str | None = Field(
        None,
        description="Train on a kept vocabulary: a model dir with kept_vocab.json (run:NAME = <run>/models/NAME, "
        "e.g. the compact target), whose tokenizer this model then uses; embedding and head hold only those rows.",
    )
    vocab_top: int | None = Field(
        None,
        ge=256,
        description="Keep only the N most frequent tokens of the vocab (+ special and byte tokens): a smaller "
        "embedding and head (cheaper steps and drafts); rarer tokens are respelled and never proposed.",
    )
    distill_from: str | None = Field(
        None, description="Teacher: a model listed before it, or run:NAME (a model dir of the run), same vocab."
    )
    distill_alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KL-to-teacher term (1-alpha on CE).")
    distill_temperature: float = Field(1.0, gt=0, description="Softmax temperature of the distillation KL.")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by heads {self.heads}")
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be divisible by kv_heads {self.kv_heads}")
        return self


class PretrainConfig(BaseConfig):
    """``tokenwise finetune pretrain``: train small Llama models from scratch with one tokenizer."""

    tokenizer: str | None = Field(
        None,
        description="run:NAME (<run>/tokenizers/NAME), run:models/NAME (a model dir's tokenizer) or a local HF "
        "tokenizer dir; models may set their own (or a vocab).",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    models: list[ModelSpec] = Field(..., min_length=1, description="Trained in order; a distil teacher goes first.")
    max_positions: int = Field(512, ge=8, description="max_position_embeddings saved in the models (serving context).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max gradient norm.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default).")
    seed: int = 0

    @model_validator(mode="after")
    def _teachers_first(self) -> PretrainConfig:
        seen: set[str] = set()
        by_name = {m.name: m for m in self.models}
        lacking = [m.name for m in self.models if not (m.tokenizer or m.vocab or self.tokenizer)]
        if lacking:
            raise ValueError(f"models {lacking} have no tokenizer: set pretrain.tokenizer, or tokenizer/vocab on them")
        for m in self.models:
            external = bool(m.distill_from and m.distill_from.startswith("run:"))
            if m.distill_from and not external and m.distill_from not in seen:
                raise ValueError(f"model {m.name!r} distils from {m.distill_from!r}, which must be listed before it")
            if m.distill_from and not external and self.tokenizer_of(m) != self.tokenizer_of(by_name[m.distill_from]):
                raise ValueError(f"model {m.name!r} distils from {m.distill_from!r}: both need the same tokenizer")
            seen.add(m.name)
        return self

    def tokenizer_of(self, model: ModelSpec) -> str:
        """The tokenizer spec a model is trained with (a kept-vocabulary model uses its vocab dir's tokenizer)."""
        if model.vocab and not model.tokenizer:
            return model.vocab.replace("run:", "run:models/", 1) if model.vocab.startswith("run:") else model.vocab
        return model.tokenizer or self.tokenizer


class LoraConfig(BaseConfig):
    """``tokenwise finetune lora``: LoRA fine-tuning of any local causal LM on curated data."""

    base: str = Field(..., description="Base model: run:NAME (<run>/models/NAME) or a local HF causal-LM dir.")
    tokenizer: str | None = Field(None, description="Tokenizer dir; None uses the base model's dir.")
    output: str = Field("lora", description="Output dir name under <run>/models/ (adapter, merged, metrics.json).")
    data: DataConfig = Field(default_factory=DataConfig)
    rank: int = Field(8, description="LoRA rank r: adapter capacity vs trainable parameters.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (update scaled by alpha/r; usually 2*rank).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names to adapt, or all-linear."
    )
    steps: int = Field(100, ge=1, description="Optimizer steps.")
    batch_size: int = Field(4, ge=1, description="Sequences per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step (effective batch multiplier).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup before cosine decay.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max gradient norm.")
    eval_every: int = Field(50, ge=1, description="Evaluate held-out loss every N steps.")
    eval_batches: int = Field(8, ge=1, description="Batches of held-out sequences per periodic eval.")
    checkpoint_every: int = Field(50, ge=1, description="Save a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on disk (oldest removed).")
    resume: bool = Field(True, description="Resume from the latest checkpoint in the output dir when present.")
    merge: bool = Field(False, description="Also save the base with the adapter merged in (a plain HF model dir).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when present.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field("auto", description="auto = on for CUDA only.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default).")
    seed: int = 0

    @model_validator(mode="after")
    def _rank_positive(self) -> LoraConfig:
        if self.rank <= 0:
            raise ValueError(f"rank must be >= 1 (got {self.rank}); typical values are 4-64")
        return self


class AdaptConfig(LoraConfig):
    """``tokenwise finetune adapt``: move a model onto a new or extended tokenizer, training new rows plus LoRA."""

    new_tokenizer: str = Field(..., description="run:NAME or a local HF tokenizer dir the model moves onto.")
    output: str = Field("adapted", description="Output dir name under <run>/models/.")
    init: Literal["mean", "random"] = Field("mean", description="New-row init: mean of old pieces, or random.")
