"""The ``measure:`` config section: plain pydantic models (no torch import), so the stage registry and config
validation stay light."""

from __future__ import annotations

from pydantic import Field, model_validator

from serving.api.config import ModelSpec, check_prices
from tokenwise.config import BaseConfig


class StackSpec(BaseConfig):
    """One serving configuration to measure."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.+-]+$", description="Stack name in the ledger.")
    lever: str = Field(..., description="The lever this stack adds to the previous one (baseline for the first).")
    model: str = Field(..., description="The `model` requests name: a served model, `auto` or router-<name>-<thr>.")
    serve_models: list[str] = Field(..., min_length=2, description="serve.models names this stack's server loads.")
    after: str | None = Field(
        None, description="A side stack: the stack its lever is measured against (default: the one listed before).",
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads of this stack's server (null = serve.threads, else the measuring "
        "process's default): a CPU setting is part of a serving configuration.",
    )


class SLOSpec(BaseConfig):
    ttft_ms: float | None = Field(2000.0, gt=0, description="Time-to-first-token SLO (ms); none = no TTFT SLO.")
    tpot_ms: float | None = Field(200.0, gt=0, description="Time-per-output-token SLO (ms); none = no TPOT SLO.")


class MeasureConfig(BaseConfig):
    """The ``measure:`` section."""

    requests: int = Field(48, ge=1, description="Held-out requests replayed through every stack.")
    prompt_bytes: int = Field(200, ge=16, description="UTF-8 bytes of document used as the prompt.")
    reference_bytes: int = Field(200, ge=16, description="Bytes of its continuation kept as the reference.")
    max_tokens: int = Field(32, ge=1, description="Completion tokens per request (greedy).")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight from the client.")
    warmup_requests: int = Field(
        1, ge=0, le=16, description="Untimed requests sent to every served model of a stack before its timed replay "
        "(weights paged in, allocator and kernels warm), so the stack that runs first is not charged one-time costs; "
        "prompts as long as the first measured ones but sharing no text with them (nothing measured is prefix-cached "
        "by the warm-up); not in the ledger."
    )
    interleave: int = Field(
        0, ge=0, le=10_000, description="Requests per turn when > 0: every stack's server starts at once and the "
        "requests go through the stacks in turns of this many (the order rotating), so a change in machine load "
        "falls on every stack alike (the stacks' threads must agree); 0 = one stack after another, one server (and "
        "its models) in memory at a time.",
    )
    languages: list[str] | None = Field(None, description="Restrict requests to these languages (none = all).")
    source: str = Field("curated", description="Run stage the held-out documents come from (curated or corpus).")
    reference_tokenizer: str = Field("tiktoken:cl100k_base", description="Fixed tokenizer every row is counted in.")
    slo: SLOSpec = Field(default_factory=SLOSpec)
    models: list[ModelSpec] = Field(
        default_factory=list,
        description="Model catalog the stacks draw from (serve.models entries; empty = serve.models).",
    )
    stacks: list[StackSpec] = Field(..., min_length=2, description="Baseline first, then one lever added per stack.")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Env var NAME holding the API key, when one is needed."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> MeasureConfig:
        names = [s.name for s in self.stacks]
        if len(set(names)) != len(names):
            raise ValueError(f"stack names must be unique: {names}")
        if self.stacks[0].lever != "baseline":
            raise ValueError("the first stack is the baseline: set its lever to `baseline`")
        check_prices(self.models, "measure.models")
        return self
