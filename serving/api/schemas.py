"""OpenAI-shaped request and response models, plus the per-request ``metrics`` extra (vLLM-style names).

Requests are validated strictly from the raw JSON (``"5"`` is not an integer), unknown fields are ignored as OpenAI-
compatible servers do; responses carry exactly OpenAI's fields plus one top-level ``metrics`` object, which the openai
client exposes as ``response.metrics`` (``model_extra``) and other clients ignore.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class StreamOptions(_Req):
    include_usage: bool = False


class _Sampling(_Req):
    model: str = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] | None = Field(
        None, description="OpenAI's request metadata; `language` and `domain` (ui, code, docs) steer the cost routers "
        "(a request without `language` is identified by fastText LID)."
    )
    ignore_eos: bool = Field(False, description="vLLM extension: generate max_tokens even past the EOS token.")

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions``; ``prompt`` is one string or one list of token ids (n=1)."""

    prompt: str | list[str] | list[int] = Field(...)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str] | list[int]) -> str | list[int]:
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError("send one prompt per request (a string, a 1-element list or a list of token ids)")
            return v[0]
        if isinstance(v, list) and not v:
            raise ValueError("prompt is empty")
        return v


class ContentPart(_Req):
    type: Literal["text"]
    text: str


class ChatMessage(_Req):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(..., min_length=1)


# ---- responses ------------------------------------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class Timing(BaseModel):
    time_to_first_token_ms: float
    mean_itl_ms: float
    tokens_per_second: float
    queue_time_ms: float
    e2e_latency_ms: float


class SpecDecoding(BaseModel):
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0
    num_spec_steps: int = 0
    mean_acceptance_length: float = 0.0
    draft_acceptance_rate: float = 0.0
    acceptance_histogram: list[int] = Field(default_factory=list)
    # the speedup model beside the counts: alpha (acceptance), k, c = draft token / plain step, v = verify / plain
    alpha: float | None = None
    k: float | None = None
    c: float | None = None
    v: float | None = Field(None, description="Verify pass / plain step time, measured for the model pair.")
    predicted_speedup: float | None = Field(None, description="Sum of E / sum of (k*c + v) over this request's steps.")
    measured_speedup: float | None = Field(None, description="Plain step time x tokens / this request's decode time.")
    auto_off: bool = Field(False, description="Speculation switched itself off in this request (losing).")
    auto_off_at_token: int | None = None


class CandidatePrediction(BaseModel):
    """A cost router's prediction for one candidate model (its own tokenizer and prices)."""

    model: str
    prompt_tokens: int = Field(..., description="Exact: the prompt in this model's tokenizer and chat template.")
    completion_tokens: int = Field(..., description="Predicted from the length ratio of the language and domain.")
    cost_usd: float = Field(..., description="Predicted cost (price-per-token router: at the largest model's tokens).")
    quality_share: float | None = Field(None, description="Calibrated quality share of the largest model's.")
    meets_floor: bool
    basis: str = Field("", description="Calibration cell of the prediction: lang/domain, lang, or empty.")


class Routing(BaseModel):
    router: str | None = None
    threshold: float | None = Field(None, description="Cascade/learned: score threshold; cost/price: quality floor.")
    score: float | None = None
    candidates: list[str] = Field(default_factory=list)
    escalations: int = 0
    reason: str | None = Field(None, description="Why this model answered (cost routers).")
    language: str | None = None
    domain: str | None = None
    fallback: bool = Field(False, description="The language was never calibrated: the largest model answered.")
    predictions: list[CandidatePrediction] = Field(default_factory=list)


class SavingsQuality(BaseModel):
    """The quality figure beside a response's savings, or where it is: one answer has no reference to score."""

    measured_per_request: bool = False
    speculative: str | None = Field(None, description="What speculation does to the output (exact / distribution).")
    router_quality_share: float | None = Field(
        None, description="Share of the largest model's quality at this router threshold (calibration set)."
    )
    where: str = Field(..., description="Where the per-stack quality figures are (bits per byte, chrF).")


class Savings(BaseModel):
    """This request against the baseline: the baseline tokenizer on the same prompt and completion text, the largest
    model's prices. Signed: negative = this request cost more than the baseline would have."""

    baseline_model: str
    baseline_tokenizer: str
    baseline_tokens: int = Field(..., description="Baseline-tokenizer tokens of this prompt and completion text.")
    billed_tokens: int
    saved_tokens: int = Field(..., description="baseline_tokens - billed_tokens (signed).")
    baseline_cost_usd: float = Field(..., description="baseline_tokens at the baseline model's prices.")
    saved_cost_usd: float = Field(..., description="baseline_cost_usd - cost_usd (signed; escalations included).")
    saved_target_passes: int = Field(0, description="Output tokens minus target forward passes (speculation).")
    quality: SavingsQuality


class RequestMetrics(BaseModel):
    timing: Timing
    speculative_decoding: SpecDecoding
    routing: Routing
    savings: Savings
    cost_usd: float
    forward_passes: int = 0


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    metrics: RequestMetrics | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None
    metrics: RequestMetrics | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    metrics: RequestMetrics | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tokenwise"
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
