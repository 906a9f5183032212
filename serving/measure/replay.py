"""Replay requests through a real HTTP server with bounded concurrency (httpx, streaming SSE for client timing)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from serving.api.cost_router import request_language


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def _one(client: httpx.AsyncClient, sem: asyncio.Semaphore, req: dict, model: str, max_tokens: int,
               api_key: str | None) -> dict[str, Any]:  # fmt: skip
    # ignore_eos (vLLM's extension): every stack writes exactly max_tokens, so no stack saves tokens by stopping early
    body = {"model": model, "prompt": req["prompt"], "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}  # fmt: skip
    if req.get("language"):  # a client that knows its traffic says so (the cost routers calibrate per language/domain)
        lang = request_language(req["language"], req.get("domain"))
        body["metadata"] = {"language": lang, "domain": str(req.get("domain") or "")}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with sem:
        t0 = time.time()
        first: float | None = None
        text, final, error, status_code, resp_headers = [], None, None, None, {}
        try:
            async with client.stream("POST", "/v1/completions", json=body, headers=headers) as resp:
                status_code, resp_headers = resp.status_code, dict(resp.headers)
                if resp.status_code != 200:
                    error = (await resp.aread()).decode("utf-8", "replace")[:500]
                else:
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            error = chunk["error"].get("message")
                            continue
                        for c in chunk.get("choices", []):
                            if c.get("text"):
                                first = first or time.time()
                                text.append(c["text"])
                        if chunk.get("usage"):
                            final = chunk
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        t1 = time.time()
    return {"request": req, "t_start": t0, "t_first": first or t1, "t_end": t1, "text": "".join(text),
            "final": final, "error": error, "http_status": status_code, "headers": resp_headers}  # fmt: skip


async def replay_async(base_url: str, requests: list[dict], model: str, max_tokens: int, concurrency: int,
                       api_key: str | None = None, timeout_s: float = 300.0) -> tuple[list[dict], float]:  # fmt: skip
    """Send every request once (at most ``concurrency`` in flight); returns raw results and the wall time."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one(client, sem, r, model, max_tokens, api_key) for r in requests))
        return list(results), time.perf_counter() - t0


WARMUP_TEXT = "This request only warms the server up and is not measured. "


def warmup_set(requests: list[dict], n: int) -> list[dict]:
    """``n`` untimed requests as long as the first measured prompts (in characters) but sharing no text with them, so
    afterwards a prefix cache holds nothing of the measured prompts (a warm-up that replays a measured request would
    serve that request's whole prompt from the cache)."""
    out = []
    for i, r in enumerate(requests[:n]):
        k = max(1, len(r["prompt"]))
        out.append({"prompt": (f"{i}. " + WARMUP_TEXT * (k // len(WARMUP_TEXT) + 1))[:k], "request_id": f"warmup-{i}"})
    return out


def replay(base_url: str, requests: list[dict], model: str, max_tokens: int, concurrency: int,
           api_key: str | None = None) -> tuple[list[dict], float]:  # fmt: skip
    """Synchronous wrapper of :func:`replay_async`."""
    return asyncio.run(replay_async(base_url, requests, model, max_tokens, concurrency, api_key))


def iso(t: float) -> str:
    """ISO-8601 UTC timestamp of a time.time() value (LiteLLM's startTime/endTime format)."""
    return _iso(t)
