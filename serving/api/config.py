"""The ``serve:`` config section: models with prices, router, limits and where API keys come from.

API keys are never read from the file: ``api_key_env`` names an environment variable whose value holds one key or
several comma-separated keys. Model paths may use ``{run}`` for the run directory (``{run}/models/target``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tokenwise.config import BaseConfig


class SpeculativeSpec(BaseConfig):
    """How a model decodes speculatively (executed by the generation backend)."""

    method: Literal["none", "draft", "prompt_lookup"] = Field("none", description="Draft source; none = plain decode.")
    draft: str | None = Field(None, description="Path of the draft model (method=draft); may use {run}.")
    k: int = Field(4, ge=1, le=16, description="Draft tokens proposed per step.")
    ngram: int = Field(3, ge=1, le=8, description="Longest n-gram matched against the context (prompt_lookup).")
    auto_off: bool = Field(
        True,
        description="Stop drafting in a request whose acceptance so far predicts a slowdown (E/(k*c+v) below "
        "min_speedup, with c and v measured for the pair at load); the response and ledger say so.",
    )
    min_speedup: float = Field(
        1.0, ge=0, le=10, description="Predicted speedup under which a request stops drafting (auto_off)."
    )
    auto_off_after: int = Field(
        4, ge=1, le=64, description="Drafted steps before deciding: fewer = cheaper losing requests, noisier alpha."
    )
    probe_overhead: float = Field(
        0.05, gt=0, le=1, description="While off, probe with one drafted step as often as this share of plain "
        "decoding pays for: more = faster recovery when acceptance comes back, more waste when it does not.",
    )


class BatchingSpec(BaseConfig):
    """Continuous batching with a paged KV cache and prefix caching (``serving.decode.batch``)."""

    enabled: bool = Field(
        False,
        description="Requests share forward passes, joining and leaving at token boundaries; off = one at a time.",
    )
    kv_budget_tokens: int = Field(
        8192,
        ge=16,
        le=10_000_000,
        description="KV cache size in tokens, allocated at load (bytes = tokens x layers x 2 x kv_heads x head_dim x "
        "dtype size); requests that do not fit wait, and one larger than it gets 400.",
    )
    block_size: int = Field(16, ge=1, le=1024, description="Tokens per KV block and per prefix-cache hash.")
    max_batch: int = Field(
        16, ge=1, le=1024, description="Most requests in one forward pass (prefilling or decoding)."
    )
    prefix_caching: bool = Field(True, description="Reuse the KV of prompt prefixes seen before (block-hashed).")
    prefill_chunk: int = Field(
        512,
        ge=1,
        le=1_000_000,
        description="Most prompt tokens per forward pass (packed with one decode token per running request).",
    )
    pack_prefill: bool = Field(
        True,
        description="Prompt chunks ride in the running requests' decode pass (one packed pass per step); false = a "
        "pass per prompt chunk before each decode pass (running requests wait for it).",
    )
    pad_head_rows: bool = Field(
        True,
        description="Pad the LM head's input rows to the count its matrix multiply runs fastest at, measured at load "
        "(a few seconds for a large vocabulary: fp32 GEMMs on CPU ran 8 rows slower than 16); false = as they come.",
    )
    screen_head: bool = Field(
        True,
        description="Greedy passes without scores pick tokens through an int8 screen of the LM head plus exact fp32 "
        "logits of the few rows that can win (same tokens, under half the head's time on CPU, +0.3x its memory; large "
        "fp32 vocabularies only); false = the full fp32 product every step.",
    )
    speculate_max_batch: int = Field(
        1,
        ge=0,
        le=1024,
        description="Speculate (speculative.method) while at most this many requests are live; 0 = never.",
    )


class ModelSpec(BaseConfig):
    """One servable model and its price."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.:/-]+$", description="Name clients pass as `model`.")
    path: str = Field(..., description="HF model directory (safetensors); may use {run}.")
    tokenizer: str | None = Field(None, description="Tokenizer dir or tokenizer.json; default: the model dir.")
    price_input_per_1m: float | None = Field(
        None, ge=0, description="USD per 1M prompt tokens of this model's own tokenizer; required in a catalog."
    )
    price_output_per_1m: float | None = Field(
        None, ge=0, description="USD per 1M completion tokens of this model's own tokenizer; required in a catalog."
    )
    quantization: Literal[
        "none", "int8_weight_only", "int8_dynamic", "int4_weight_only", "int8_dynamic_outliers"
    ] = "none"
    speculative: SpeculativeSpec = Field(default_factory=SpeculativeSpec)
    max_context: int = Field(512, ge=8, le=131072, description="Prompt + completion tokens; bounds KV cache memory.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD cost of one request."""
        if self.price_input_per_1m is None or self.price_output_per_1m is None:
            raise ValueError(f"model {self.name!r} has no price (price_input_per_1m / price_output_per_1m)")
        return (prompt_tokens * self.price_input_per_1m + completion_tokens * self.price_output_per_1m) / 1e6


class CatalogError(ValueError):
    """A catalog model that cannot be served as configured (no price, tokenizer that does not load); names it."""


def check_prices(models: list[ModelSpec], where: str) -> None:
    """Every model in a catalog has both prices: routing and the ledger price each model's own tokens."""
    for m in models:
        missing = [k for k in ("price_input_per_1m", "price_output_per_1m") if getattr(m, k) is None]
        if missing:
            raise CatalogError(f"{where}: model {m.name!r} has no {' / '.join(missing)}; give its USD price per 1M "
                               "tokens of its own tokenizer (routing compares models by cost)")  # fmt: skip


class RouterSpec(BaseConfig):
    """Routing between the listed models (cheapest first)."""

    strategy: Literal["cascade", "learned", "cost", "price"] = Field(
        "cascade",
        description="Default router for `model: auto`: cascade/learned (confidence), cost (cheapest model per request "
        "meeting the quality floor, each model's own tokens), price (the same ranking models by price per token).",
    )
    confidence: Literal["mean_logprob", "neg_entropy", "min_logprob"] = Field(
        "mean_logprob", description="Cascade score of the cheap model's own tokens; higher = more confident."
    )
    preview_tokens: int = Field(
        8,
        ge=0,
        le=4096,
        description="Tokens the cheap model drafts before deciding (0 = its whole answer); "
        "fewer = cheaper escalations, noisier score.",
    )
    threshold: float | None = Field(None, description="Escalate when score < threshold; None = use calibration file.")
    calibration_file: str | None = Field(None, description="JSON written by `serve calibrate`; may use {run}.")
    budget_max_escalation: float | None = Field(
        None, gt=0, le=1, description="Calibrate: at most this share of requests go past the cheapest model."
    )
    budget_min_quality: float | None = Field(
        0.95, gt=0, le=1, description="Calibrate: at least this share of the largest model's quality."
    )
    cascade_models: list[str] | None = Field(
        None, description="serve.models the cascade and learned routers chain (cheapest first); null = all. Names a "
        "server does not serve are skipped (fewer than two left = all)."
    )
    cost_models: list[str] | None = Field(
        None, description="serve.models the cost/price routers choose among; null = all (same skipping rule)."
    )
    calibration_prompts: int = Field(64, ge=4, le=100000, description="Held-out documents used to calibrate.")
    prompt_bytes: int = Field(256, ge=16, description="Bytes of each calibration document used as the prompt.")
    reference_bytes: int = Field(256, ge=16, description="Bytes of its continuation scored as the reference.")


class LimitsSpec(BaseConfig):
    """Request limits and queueing; every one bounds memory or abuse."""

    max_concurrent: int = Field(4, ge=1, le=1024, description="Requests generating at once (bounds KV cache memory).")
    max_queue: int = Field(16, ge=0, le=100000, description="Requests waiting beyond max_concurrent before 429.")
    max_tokens: int = Field(256, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(64, ge=1, description="max_tokens when a request gives none.")
    max_prompt_tokens: int = Field(1024, ge=1, description="Longest prompt in tokens (413 past it).")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body in bytes (413 past it).")
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 429.")


class ServeConfig(BaseConfig):
    """The ``serve:`` section: what `tokenwise serve` loads and how it answers."""

    host: str = Field("127.0.0.1", description="Bind address; keep loopback unless behind a proxy.")
    port: int = Field(8000, ge=0, le=65535, description="0 = any free port.")
    models: list[ModelSpec] = Field(default_factory=list, description="At least two models, any order.")
    router: RouterSpec = Field(default_factory=RouterSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="NAME of the env var holding API keys (comma-separated); never the key itself.",
    )
    metrics_prefix: Literal["tokenwise", "vllm"] = Field("tokenwise", description="vllm = dashboards for vLLM work.")
    baseline_tokenizer: str = Field("tiktoken:cl100k_base", description="Tokenizer that savings are counted against.")
    seed: int = 0
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads (intra-op) of the server's process; null = torch's default (every "
        "core). Fewer leave cores to other jobs on a shared machine.",
    )

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if len(self.models) == 1:
            raise ValueError("list at least two models to route between (one cheap, one large), or none to skip")
        names = [m.name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model names must be unique; repeated: {sorted(dup)}")
        reserved = {n for n in names if n == "auto" or n.startswith("router-")}
        if reserved:
            raise ValueError(f"model names 'auto' and 'router-*' are reserved for routers; rename {sorted(reserved)}")
        check_prices(self.models, "serve.models")
        if self.limits.default_max_tokens > self.limits.max_tokens:
            raise ValueError("limits.default_max_tokens must be <= limits.max_tokens")
        return self

    def by_cost(self) -> list[ModelSpec]:
        """Models cheapest first (output price, then input price, then listed order)."""
        return sorted(self.models, key=lambda m: (m.price_output_per_1m or 0.0, m.price_input_per_1m or 0.0))

    def router_chain(self, kind: str) -> list[str]:
        """The models a router chooses among, cheapest first: ``router.cascade_models`` (cascade, learned) or
        ``router.cost_models`` (cost, price) where at least two of them are served, else every served model."""
        names = [m.name for m in self.by_cost()]
        want = self.router.cost_models if kind in ("cost", "price") else self.router.cascade_models
        sub = [n for n in names if want is None or n in want]
        return sub if len(sub) >= 2 else names

    def resolved(self, run_dir: str | None) -> ServeConfig:
        """A copy with ``{run}`` in paths replaced by the run directory."""
        run = str(run_dir or ".")
        data = self.model_dump()
        for m in data["models"]:
            m["path"] = m["path"].replace("{run}", run)
            if m["tokenizer"]:
                m["tokenizer"] = m["tokenizer"].replace("{run}", run)
            if m["speculative"]["draft"]:
                m["speculative"]["draft"] = m["speculative"]["draft"].replace("{run}", run)
        if data["router"]["calibration_file"]:
            data["router"]["calibration_file"] = data["router"]["calibration_file"].replace("{run}", run)
        return ServeConfig.model_validate(data)
