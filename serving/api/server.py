"""The OpenAI-compatible HTTP API: ``/v1/completions``, ``/v1/chat/completions`` (SSE streaming), ``/v1/models``,
``/health`` and ``/metrics``, with routing, a bounded queue, per-request timing and OpenAI-shaped errors.

Each request takes one of ``limits.max_concurrent`` slots (so at most that many KV caches live at once, each bounded by
its model's ``max_context``); up to ``limits.max_queue`` more wait, and past that the server answers 429 with
``Retry-After``. Generation runs in a worker thread per request and streams token steps back to the event loop; a
model's forward passes are serialised by the backend, so concurrent greedy requests return exactly what they return
alone. Every error reaches the client as ``{"error": {"message", "type", "param", "code"}}``, never a stack trace.

Differences from OpenAI worth knowing: ``temperature`` defaults to 0 (greedy) so routing and measurements are
reproducible; ``n`` is 1; streamed responses carry the cost in the final usage chunk's ``metrics.cost_usd`` (headers
are sent before it is known). ``model`` may be a configured model, ``auto`` (the configured router) or
``router-<cascade|learned|cost|price>[-<threshold>]``; the response's ``model`` and ``x-tokenwise-model`` name the
model that answered, ``metrics.routing`` why (cost routers: each candidate's predicted cost and quality).

:func:`serve_in_background` starts a real uvicorn server on a free 127.0.0.1 port in a thread (tests, measurement).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api import router as rt
from serving.api.backend import Backend, GenParams, Step, load_backend
from serving.api.config import ServeConfig
from serving.api.metrics import QUALITY_WHERE, ServeMetrics
from serving.api.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    RequestMetrics,
    Routing,
    Savings,
    SavingsQuality,
    SpecDecoding,
    Timing,
    Usage,
)
from serving.decode.batch import KVBudgetExceeded
from serving.openmp_pool import release_openmp_pool
from tokenwise.log import kv
from tokenwise.tokenizer_specs import load_tokenizer

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error the client caused (or a refusal), rendered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# ---- server state ---------------------------------------------------------------------------------------------------


@dataclass
class State:
    """Everything a request handler needs: config, loaded backends, router calibration, metrics and the queue."""

    config: ServeConfig
    backends: dict[str, Backend]
    calibration: dict | None
    metrics: ServeMetrics
    api_keys: set[str]
    baseline: Any
    chain: list[str] = field(default_factory=list)
    running: int = 0
    waiting: int = 0
    slots: asyncio.Semaphore | None = None
    workers: set[threading.Thread] = field(default_factory=set)

    def join_workers(self, timeout: float = 30.0) -> None:
        """Wait for generation threads still running (e.g. after clients went away) before shutdown."""
        deadline = time.monotonic() + timeout
        for t in list(self.workers):
            t.join(max(0.0, deadline - time.monotonic()))

    def spec(self, name: str):
        return next(m for m in self.config.models if m.name == name)


def _api_keys(env_name: str | None) -> set[str]:
    if not env_name:
        return set()
    raw = os.environ.get(env_name, "")
    keys = {k.strip() for k in raw.split(",") if k.strip()}
    if not keys:
        raise ValueError(
            f"api_key_env names {env_name!r} but that environment variable is empty or unset; "
            "export it (comma-separated keys) or remove api_key_env"
        )
    return keys


def _baseline_tokenizer(spec: str) -> Any:

    try:
        return load_tokenizer(spec)
    except Exception as e:  # savings are reported without a baseline rather than failing the server
        log.warning(kv(event="baseline_tokenizer_unavailable", spec=spec, error=str(e)))
        return None


def create_app(
    config: ServeConfig,
    backends: dict[str, Backend] | None = None,
    calibration: dict | None = None,
    run_dir: str | None = None,
) -> FastAPI:
    """Build the FastAPI app; ``backends`` (name -> Backend) default to loading every configured model."""
    config = config.resolved(run_dir) if run_dir else config
    if config.threads:  # before any model loads: the process's intra-op thread count
        import torch  # heavy: deferred until used

        torch.set_num_threads(config.threads)
    if backends is None:
        backends = {m.name: load_backend(m) for m in config.models}
    missing = [m.name for m in config.models if m.name not in backends]
    if missing:
        raise ValueError(f"no backend for configured models {missing}")
    if calibration is None and config.router.calibration_file and os.path.exists(config.router.calibration_file):
        with open(config.router.calibration_file, encoding="utf-8") as f:
            calibration = json.load(f)
    state = State(
        config,
        backends,
        calibration,
        ServeMetrics(config.metrics_prefix),
        _api_keys(config.api_key_env),
        _baseline_tokenizer(config.baseline_tokenizer),
        [m.name for m in config.by_cost()],
    )
    for name in rt.ROUTER_NAMES:  # the routing savings' quality figure, beside them on /metrics
        share = (((calibration or {}).get(name) or {}).get("point") or {}).get("quality_share")
        if share is not None:
            state.metrics.router_quality.labels(name).set(share)
    app = FastAPI(title="tokenwise", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tw = state
    release_openmp_pool()  # loading and calibrating ran here; requests decode in worker threads (serving.openmp_pool)
    _install_error_handlers(app, state)
    _install_routes(app, state)
    return app


def _install_error_handlers(app: FastAPI, state: State) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        state.metrics.rejected.labels(e.code or e.type).inc()
        return error_response(e.status, e.message, e.type, e.param, e.code, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = f"{request.method} {request.url.path}: {e.detail}"
        return error_response(e.status_code, msg, "invalid_request_error", None, str(e.status_code))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(400, str(e), "invalid_request_error")

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        log.exception(kv(event="internal_error", path=request.url.path))
        return error_response(500, "internal server error; the server log has details", "server_error")


# ---- request parsing ------------------------------------------------------------------------------------------------


def _check_auth(state: State, request: Request) -> None:
    if not state.api_keys:
        return
    auth = request.headers.get("authorization", "")
    if not auth:
        raise APIError(401, "missing API key; send 'Authorization: Bearer <key>'", code="missing_api_key")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or key.strip() not in state.api_keys:
        raise APIError(401, "invalid API key", code="invalid_api_key")


async def _parse(state: State, request: Request, model: type):
    limit = state.config.limits.max_body_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        raise APIError(413, f"request body is larger than the limit of {limit} bytes", code="request_too_large")
    raw = await request.body()
    if len(raw) > limit:
        raise APIError(413, f"request body is larger than the limit of {limit} bytes", code="request_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"request body is not valid UTF-8 (byte {e.start})", code="invalid_encoding") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(
            400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        code = "missing_required_parameter" if err["type"] == "missing" else "invalid_value"
        if "type" in err["type"] or err["type"].endswith("_parsing"):
            code = "invalid_type"
        raise APIError(400, f"{param}: {err['msg']}{got}", param=param, code=code) from None


@dataclass
class Plan:
    """What to run for one request once parsed."""

    prompt: str
    prompt_ids: list[int] | None
    params: GenParams
    model: str | None  # direct model, or None when routed
    router: str | None
    threshold: float | None
    stops: list[str]
    max_prompt: int
    messages: list[dict[str, str]] | None = None  # chat: each routed model renders them with its own template
    language: str | None = None  # request metadata hints for the cost routers
    domain: str | None = None


def _plan(state: State, req: CompletionRequest | ChatCompletionRequest) -> Plan:
    lim = state.config.limits
    names = list(state.backends)
    try:
        parsed = rt.parse_router_model(req.model) if req.model != "auto" else (state.config.router.strategy, None)
    except rt.RouterNameError as e:
        raise APIError(404, str(e), param="model", code="model_not_found") from None
    if parsed is None and req.model not in state.backends:
        raise APIError(
            404,
            f"the model {req.model!r} does not exist; available: {names + ['auto']} "
            "or router-<cascade|learned|cost|price>[-<threshold>]",
            param="model",
            code="model_not_found",
        )
    max_tokens = req.limit() or lim.default_max_tokens
    if max_tokens > lim.max_tokens:
        raise APIError(
            400,
            f"max_tokens is {max_tokens}; this server allows at most {lim.max_tokens}",
            param="max_tokens",
            code="invalid_value",
        )
    if parsed and parsed[0] in ("cost", "price") and "cost" not in (state.calibration or {}):
        raise APIError(
            404,
            f"the {parsed[0]} router is not calibrated on this server; run `tokenwise serve calibrate` and restart, "
            "or use router-cascade",
            param="model",
            code="model_not_found",
        )
    if parsed and parsed[0] == "learned" and "learned" not in (state.calibration or {}):
        raise APIError(
            404,
            "the learned router is not trained on this server; run `tokenwise serve calibrate` and restart, "
            "or use router-cascade",
            param="model",
            code="model_not_found",
        )
    involved = [req.model] if parsed is None else state.config.router_chain(parsed[0])
    ctx = min(state.spec(n).max_context for n in involved)
    max_prompt = min(lim.max_prompt_tokens, ctx - max_tokens)
    if max_prompt < 1:
        raise APIError(
            400,
            f"max_tokens {max_tokens} leaves no room for a prompt in the context of {ctx} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
    first = state.backends[involved[0]]
    prompt_ids, messages = None, None
    if isinstance(req, ChatCompletionRequest):
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        prompt = first.chat_prompt(messages)
    elif isinstance(req.prompt, list):
        vocab = first.vocab_size
        bad = [i for i in req.prompt if not 0 <= i < vocab]
        if bad:
            raise APIError(400, f"prompt token ids must be in [0, {vocab}); got {bad[:5]}", param="prompt")
        prompt_ids, prompt = req.prompt, first.decode(req.prompt)
        if len(prompt_ids) > max_prompt:
            raise _too_long(len(prompt_ids), max_prompt)
    else:
        prompt = req.prompt
    if len(prompt.encode("utf-8")) > max_prompt * 64:  # cheap guard before tokenising a huge prompt
        raise _too_long(len(prompt.encode("utf-8")), max_prompt, unit="bytes")
    temperature = req.temperature if "temperature" in req.model_fields_set else 0.0
    seed = req.seed if req.seed is not None else state.config.seed
    # scores=False: no per-token log-prob/entropy (no response field shows them); the cascade router asks for its own
    params = GenParams(max_tokens, temperature, req.top_p, seed, ignore_eos=req.ignore_eos, scores=False)
    threshold = parsed[1] if parsed else None
    return Plan(
        prompt,
        prompt_ids,
        params,
        None if parsed else req.model,
        parsed[0] if parsed else None,
        threshold,
        list(req.stop or []),
        max_prompt,
        messages if parsed else None,
        (req.metadata or {}).get("language"),
        (req.metadata or {}).get("domain"),
    )


def _too_long(n: int, limit: int, unit: str = "tokens") -> APIError:
    return APIError(
        400,
        f"prompt is {n} {unit}; the limit is {limit} tokens for this model and max_tokens. "
        "Shorten the prompt or lower max_tokens.",
        param="prompt",
        code="context_length_exceeded",
    )


# ---- running a request ----------------------------------------------------------------------------------------------


def _start(state: State, plan: Plan) -> rt.Routed:
    """Route and start generation (runs in the worker thread)."""
    if plan.router is None:
        b = state.backends[plan.model]
        ids = (
            plan.prompt_ids if plan.prompt_ids is not None else rt._fit_prompt(b.encode(plan.prompt), plan.max_prompt)
        )
        return rt.direct(plan.model, b, ids, plan.params)
    cfg = state.config.router
    served = {m.name: (m.path, (m.price_input_per_1m, m.price_output_per_1m)) for m in state.config.models}
    r = rt.router_from_calibration(
        plan.router, state.config.router_chain(plan.router), state.calibration, plan.threshold, cfg.confidence,
        cfg.preview_tokens, served,
    )
    prompt = plan.messages if plan.messages is not None else plan.prompt
    return r.start(state.backends, prompt, plan.params, plan.max_prompt, language=plan.language, domain=plan.domain)


class Job:
    """One request's generation in a worker thread, handing events to the event loop through an asyncio queue."""

    def __init__(self, state: State, plan: Plan, release: Callable[[], None]):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.routed: rt.Routed | None = None
        self._release = release
        self._workers = state.workers
        thread = threading.Thread(target=self._run, args=(state, plan), daemon=True)
        state.workers.add(thread)
        thread.start()

    def _put(self, *event: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def _run(self, state: State, plan: Plan) -> None:
        try:
            self.routed = _start(state, plan)
            self._put("routed", self.routed)
            for step in _chain_steps(self.routed):
                if self.cancelled.is_set():
                    break
                self._put("step", step, time.perf_counter())
            self.routed.generation.close()  # the stats of the steps that ran are final before "done" is sent
            self._put("done", None)
        except rt.PromptTooLong as e:
            self._put("error", _too_long(e.n, e.limit))
        except KVBudgetExceeded as e:
            self._put("error", APIError(400, str(e), param="max_tokens", code="kv_budget_exceeded"))
        except Exception as e:  # reported to the client as a 500 without details; logged with the trace here
            log.exception(kv(event="generation_failed"))
            self._put("error", e)
        finally:
            if self.routed is not None:
                self.routed.generation.close()
            self._workers.discard(threading.current_thread())
            self.loop.call_soon_threadsafe(self._release)

    async def next(self) -> tuple:
        return await self.queue.get()

    async def finished(self) -> None:
        """Skip the steps still queued and wait for the worker's end (its "done", or an error after the answer)."""
        while True:
            ev = await self.next()
            if ev[0] == "error":
                log.warning(kv(event="error_after_stop", error=str(ev[1])))
            if ev[0] in ("done", "error"):
                return

    def cancel(self) -> None:
        """Stop generating: the worker stops at its next step; a batched generation frees its KV blocks now."""
        self.cancelled.set()
        routed = self.routed
        if routed is not None and routed.generation.abort is not None:
            routed.generation.abort()


def _chain_steps(routed: rt.Routed) -> Iterator[Step]:
    yield from routed.prefix
    yield from routed.generation


@dataclass
class Outcome:
    """The finished request: text, token counts, timings and the routing record."""

    routed: rt.Routed
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    t_arrival: float = 0.0
    t_start: float = 0.0
    times: list[float] = field(default_factory=list)
    prompt: str = ""  # the prompt text as served (savings count it with the baseline tokenizer)
    greedy: bool = True


class Detok:
    """Incremental detokenisation with stop strings: emits only text that can no longer change or be cut."""

    def __init__(self, backend: Backend, stops: list[str], eos_ids: set[int]):
        self.b, self.stops, self.eos = backend, stops, eos_ids
        self.ids: list[int] = []
        self.sent = ""
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.stopped = False

    def add(self, tok: int) -> str:
        """Take one token; return the newly final text (the EOS token ends the text and is not shown)."""
        if tok in self.eos:
            self.stopped = True
            return self._send(self.b.decode(self.ids))
        self.ids.append(tok)
        text = self.b.decode(self.ids)
        cuts = [text.find(s) for s in self.stops if s in text]
        if cuts:
            self.stopped = True
            return self._send(text[: min(cuts)])
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return ""
        return self._send(text[: len(text) - self.hold])

    def flush(self) -> str:
        """The held-back tail once generation ended by length."""
        return self._send(self.b.decode(self.ids))

    def _send(self, upto: str) -> str:
        if len(upto) <= len(self.sent):
            return ""
        new, self.sent = upto[len(self.sent) :], upto
        return new


async def _events(state: State, plan: Plan) -> AsyncIterator[tuple[str, Any]]:
    """Admit, run and yield ("routed", Routed), then ("text", str) pieces, then ("done", Outcome)."""
    lim, m = state.config.limits, state.metrics
    t_arrival = time.perf_counter()
    if state.running + state.waiting >= lim.max_concurrent + lim.max_queue:
        raise APIError(
            429,
            f"server busy: {state.running} running and {state.waiting} queued; retry after {lim.retry_after_s}s",
            type_="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(lim.retry_after_s)},
        )
    if state.slots is None:
        state.slots = asyncio.Semaphore(lim.max_concurrent)
    state.waiting += 1
    m.waiting.set(state.waiting)
    try:
        await state.slots.acquire()
    finally:
        state.waiting -= 1
        m.waiting.set(state.waiting)
    state.running += 1
    m.running.set(state.running)

    def release() -> None:
        state.running -= 1
        m.running.set(state.running)
        state.slots.release()

    job = Job(state, plan, release)
    t_start = time.perf_counter()
    try:
        kind, payload = await job.next()
        if kind == "error":
            raise payload
        out = Outcome(payload, t_arrival=t_arrival, t_start=t_start, prompt=payload.prompt_text or plan.prompt,
                      greedy=plan.params.temperature <= 0)  # fmt: skip
        yield "routed", payload
        b = state.backends[payload.model]
        detok = Detok(b, plan.stops, set() if plan.params.ignore_eos else b.eos_ids)
        while True:
            ev = await job.next()
            if ev[0] == "error":
                raise ev[1]
            if ev[0] == "done":
                break
            step, t = ev[1], ev[2]
            out.token_ids.append(step.token_id)
            out.times.append(t)
            piece = detok.add(step.token_id)
            if piece:
                out.text += piece
                yield "text", piece
            if detok.stopped:
                out.finish_reason = "stop"
                job.cancel()
                await job.finished()  # the generation's stats are copied when the worker ends, not at EOS
                break
        if not detok.stopped:
            tail = detok.flush()
            if tail:
                out.text += tail
                yield "text", tail
        yield "done", out
    finally:
        job.cancel()


def _spec(stats: dict) -> SpecDecoding:
    """The per-request speculative-decoding extra from the Engine's stats (zeros for plain decoding)."""
    drafted = int(stats.get("num_draft_tokens") or 0)
    accepted = int(stats.get("num_accepted_draft_tokens") or 0)
    steps = int(stats.get("num_spec_steps") or 0)
    return SpecDecoding(
        num_draft_tokens=drafted,
        num_accepted_draft_tokens=accepted,
        num_spec_steps=steps,
        mean_acceptance_length=float(stats.get("mean_acceptance_length") or 0.0),
        draft_acceptance_rate=float(stats.get("draft_acceptance_rate") or 0.0),
        acceptance_histogram=[int(x) for x in stats.get("acceptance_histogram") or []],
        alpha=_opt_float(stats.get("alpha")),
        k=_opt_float(stats.get("mean_k") or stats.get("k")),
        c=_opt_float(stats.get("c")),
        v=_opt_float(stats.get("v")),
        predicted_speedup=_opt_float(stats.get("predicted_speedup")),
        measured_speedup=_opt_float(stats.get("measured_speedup")),
        auto_off=bool(stats.get("spec_auto_off")),
        auto_off_at_token=stats.get("auto_off_at_token"),
    )


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _finish(state: State, out: Outcome) -> tuple[Usage, RequestMetrics, float]:
    """Usage, the per-request metrics extra and the cost; records every Prometheus series."""
    r, m = out.routed, state.metrics
    spec = state.spec(r.model)
    n_prompt, n_out = len(r.prompt_ids), len(out.token_ids)
    t_end = time.perf_counter()
    cost = spec.cost(n_prompt, n_out)
    for a in r.attempts:
        cost += state.spec(a.model).cost(a.prompt_tokens, a.completion_tokens)
    ttft = (out.times[0] if out.times else t_end) - out.t_arrival
    itls = [b - a for a, b in zip(out.times, out.times[1:], strict=False)]
    gen_s = max((out.times[-1] if out.times else t_end) - out.t_start, 1e-9)
    timing = Timing(
        time_to_first_token_ms=ttft * 1e3,
        mean_itl_ms=(sum(itls) / len(itls) * 1e3) if itls else 0.0,
        tokens_per_second=n_out / gen_s,
        queue_time_ms=(out.t_start - out.t_arrival) * 1e3,
        e2e_latency_ms=(t_end - out.t_arrival) * 1e3,
    )
    sd = _spec(r.generation.stats)
    fwd = int(r.generation.stats.get("forward_passes", 0))
    largest = state.spec(state.chain[-1])
    savings = _savings(state, out, n_prompt + n_out, cost, fwd if sd.num_spec_steps else n_out)
    routing = Routing(
        router=r.router, threshold=r.threshold, score=r.score, candidates=r.candidates, escalations=len(r.attempts),
        reason=r.reason, language=r.language, domain=r.domain, fallback=r.fallback, predictions=r.predictions,
    )  # fmt: skip
    metrics = RequestMetrics(
        timing=timing, speculative_decoding=sd, routing=routing, savings=savings, cost_usd=cost, forward_passes=fwd
    )
    m.prompt_tokens.labels(r.model).inc(n_prompt)
    m.generation_tokens.labels(r.model).inc(n_out)
    m.observe_latency(r.model, ttft, itls, t_end - out.t_arrival, out.t_start - out.t_arrival)
    m.observe_spec(
        r.model, sd.num_spec_steps, sd.num_draft_tokens, sd.num_accepted_draft_tokens, sd.acceptance_histogram
    )
    m.success.labels(r.model, out.finish_reason).inc()
    m.cost.labels(r.model).inc(cost)
    _count_savings(state, r, savings, n_out)
    if r.router:
        m.router_requests.labels(r.router, r.model).inc()
        nexts = [x.model for x in r.attempts[1:]] + [r.model]
        for a, nxt in zip(r.attempts, nexts[: len(r.attempts)], strict=True):
            m.router_escalations.labels(r.router, a.model, nxt).inc()
        m.split(m.routing_saved, m.routing_spent, (r.router,), largest.cost(n_prompt, n_out) - cost)
    cached = int(r.generation.stats.get("cached_tokens") or 0)
    if "cached_tokens" in r.generation.stats:  # a batched backend looked the prompt up in its prefix cache
        m.observe_prefix(r.model, n_prompt, cached)
    usage = Usage(
        prompt_tokens=n_prompt,
        completion_tokens=n_out,
        total_tokens=n_prompt + n_out,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
    return usage, metrics, cost


def _savings(state: State, out: Outcome, billed: int, cost: float, target_passes: int) -> Savings:
    """This request against the baseline: the baseline tokenizer on the exact prompt and completion text."""
    r, largest = out.routed, state.spec(state.chain[-1])
    if state.baseline is not None:
        b_prompt, b_out = len(state.baseline.encode(out.prompt)), len(state.baseline.encode(out.text))
    else:  # the baseline tokenizer failed to load (logged at start): the stack's own counts stand in for it
        b_prompt, b_out = len(r.prompt_ids), len(out.token_ids)
    base_cost = largest.cost(b_prompt, b_out)
    stats = r.generation.stats
    spec = None
    if stats.get("num_spec_steps"):
        spec = "exact: greedy output is the target's" if out.greedy else "sampled: the target's distribution"
    return Savings(
        baseline_model=largest.name,
        baseline_tokenizer=state.config.baseline_tokenizer if state.baseline is not None else "none (own tokenizer)",
        baseline_tokens=b_prompt + b_out,
        billed_tokens=billed,
        saved_tokens=b_prompt + b_out - billed,
        baseline_cost_usd=base_cost,
        saved_cost_usd=base_cost - cost,
        saved_target_passes=len(out.token_ids) - target_passes,
        quality=SavingsQuality(speculative=spec, router_quality_share=_router_quality(state, r), where=QUALITY_WHERE),
    )


def _router_quality(state: State, r: rt.Routed) -> float | None:
    """The calibration set's quality share at this request's router threshold (None when not calibrated there)."""
    entry = (state.calibration or {}).get(r.router or "") or {}
    if r.router in ("cost", "price"):  # the calibrated floor's quality share (another floor: not calibrated there)
        mode = "per_request" if r.router == "cost" else "per_token"
        fl = (((state.calibration or {}).get("cost") or {}).get("floors") or {}).get(mode) or {}
        return fl.get("quality_share") if fl.get("floor") == r.threshold else None
    if r.threshold is None or entry.get("threshold") is None:
        return None
    if entry["threshold"] == r.threshold:
        return (entry.get("point") or {}).get("quality_share")
    same = [p for p in entry.get("curve") or [] if p.get("threshold") == r.threshold]
    return same[0].get("quality_share") if same else None


def _count_savings(state: State, r: rt.Routed, sv: Savings, n_out: int) -> None:
    m, stats = state.metrics, r.generation.stats
    m.baseline_tokens.labels(r.model).inc(sv.baseline_tokens)
    m.split(m.tokenizer_saved, m.tokenizer_spent, (r.model,), sv.saved_tokens)
    if stats.get("num_spec_steps"):
        m.spec_saved_passes.labels(r.model).inc(max(sv.saved_target_passes, 0))
        m.spec_draft_passes.labels(r.model).inc(int(stats.get("draft_forward_passes") or 0))
        plain, spent = stats.get("plain_step_s"), stats.get("decode_compute_s")
        if plain and spent is not None and n_out > 1:
            m.split(m.spec_saved_s, m.spec_spent_s, (r.model,), plain * (n_out - 1) - spent)
    if stats.get("spec_auto_off"):
        m.spec_auto_off.labels(r.model).inc()


def _headers(routed: rt.Routed, cost: float | None, rid: str) -> dict[str, str]:
    h = {"x-tokenwise-model": routed.model, "x-request-id": rid}
    if routed.router:
        h["x-tokenwise-router"] = routed.router
    if cost is not None:
        h["x-litellm-response-cost"] = f"{cost:.10f}"
    return h


# ---- routes ---------------------------------------------------------------------------------------------------------


def _install_routes(app: FastAPI, state: State) -> None:
    @app.get("/health")
    async def health() -> dict:
        kv = {name: b.batch.snapshot() for name, b in state.backends.items() if getattr(b, "batch", None)}
        return {
            "status": "ok",
            "models": list(state.backends),
            "running": state.running,
            "waiting": state.waiting,
            "batching": kv,
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        for name, b in state.backends.items():
            if getattr(b, "batch", None):
                state.metrics.observe_kv(name, b.batch.snapshot())
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        _check_auth(state, request)
        now = int(time.time())
        cards = [
            ModelCard(
                id=m.name,
                created=now,
                metadata={
                    "price_input_per_1m": m.price_input_per_1m,
                    "price_output_per_1m": m.price_output_per_1m,
                    "quantization": m.quantization,
                    "speculative": m.speculative.method,
                    "max_context": m.max_context,
                },
            )
            for m in state.config.models
        ]
        for name in ["auto", "router-cascade", "router-learned", "router-cost", "router-price"]:
            need = {"router-learned": "learned", "router-cost": "cost", "router-price": "cost"}.get(name)
            if need is None or need in (state.calibration or {}):
                cards.append(ModelCard(id=name, created=now, metadata={"router": True, "candidates": state.chain}))
        return ModelList(data=cards).model_dump()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        _check_auth(state, request)
        req = await _parse(state, request, CompletionRequest)
        return await _respond(state, req, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        _check_auth(state, request)
        req = await _parse(state, request, ChatCompletionRequest)
        return await _respond(state, req, chat=True)


async def _respond(state: State, req: CompletionRequest | ChatCompletionRequest, chat: bool) -> Response:
    plan = _plan(state, req)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    events = _events(state, plan)
    kind, routed = await events.__anext__()  # admission, routing and prompt checks happen before any byte is sent
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        gen = _sse(state, events, routed, rid, created, chat, include_usage)
        return StreamingResponse(gen, media_type="text/event-stream", headers=_headers(routed, None, rid))
    async for kind, payload in events:
        if kind == "done":
            out = payload
    usage, metrics, cost = _finish(state, out)
    choice_kw = {"finish_reason": out.finish_reason}
    if chat:
        body = ChatCompletion(
            id=rid,
            created=created,
            model=routed.model,
            usage=usage,
            metrics=metrics,
            choices=[ChatChoice(message=AssistantMessage(content=out.text), **choice_kw)],
        )
    else:
        text = (plan.prompt + out.text) if getattr(req, "echo", False) else out.text
        body = Completion(
            id=rid,
            created=created,
            model=routed.model,
            usage=usage,
            metrics=metrics,
            choices=[CompletionChoice(text=text, **choice_kw)],
        )
    return JSONResponse(body.model_dump(mode="json"), headers=_headers(routed, cost, rid))


async def _sse(
    state: State, events: AsyncIterator, routed: rt.Routed, rid: str, created: int, chat: bool, include_usage: bool
) -> AsyncIterator[str]:
    model = routed.model

    def chunk(text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta = Delta(role="assistant" if role else None, content=text)
            c = ChatCompletionChunk(
                id=rid, created=created, model=model, choices=[ChatChunkChoice(delta=delta, finish_reason=finish)]
            )
        else:
            c = Completion(
                id=rid, created=created, model=model, choices=[CompletionChoice(text=text or "", finish_reason=finish)]
            )
        return "data: " + c.model_dump_json(exclude_none=True) + "\n\n"

    try:
        if chat:
            yield chunk("", None, role=True)
        out = None
        async for kind, payload in events:
            if kind == "text":
                yield chunk(payload, None)
            elif kind == "done":
                out = payload
        usage, metrics, cost = _finish(state, out)
        yield chunk(None if chat else "", out.finish_reason)
        if include_usage:
            cls = ChatCompletionChunk if chat else Completion
            final = cls(id=rid, created=created, model=model, choices=[], usage=usage, metrics=metrics)
            yield "data: " + final.model_dump_json() + "\n\n"
        yield "data: [DONE]\n\n"
    except APIError as e:
        yield (
            "data: "
            + json.dumps({"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}})
            + "\n\n"
        )
    except Exception:
        log.exception(kv(event="stream_failed", id=rid))
        yield (
            "data: "
            + json.dumps(
                {"error": {"message": "internal server error", "type": "server_error", "param": None, "code": None}}
            )
            + "\n\n"
        )
    finally:
        await events.aclose()


# ---- running the server ---------------------------------------------------------------------------------------------


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound listening socket (port 0 = any free port), handed to uvicorn so no other process can take the port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    return s


class BackgroundServer:
    """A uvicorn server in a daemon thread; ``url`` is its base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):

        self.app = app
        self.sock = free_socket(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"server on {self.url} did not start within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.app.state.tw.join_workers(timeout)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self if self.server.started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_background(
    config: ServeConfig,
    backends: dict[str, Backend] | None = None,
    calibration: dict | None = None,
    run_dir: str | None = None,
    port: int = 0,
) -> BackgroundServer:
    """Start the API on 127.0.0.1 (a free port by default) in a background thread; call ``.stop()`` when done.

    Usable as a context manager: ``with serve_in_background(cfg) as srv: httpx.get(srv.url + "/health")``.
    """
    app = create_app(config, backends, calibration, run_dir)
    return BackgroundServer(app, "127.0.0.1", port).start()


def run_server(config: ServeConfig, run_dir: str | None = None) -> None:
    """Load every model and serve until interrupted (``tokenwise serve``)."""
    app = create_app(config, run_dir=run_dir)
    log.info(kv(event="serving", host=config.host, port=config.port, models=",".join(app.state.tw.chain)))
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
