"""Prometheus metrics with vLLM's names and labels under a ``tokenwise:`` prefix (or ``vllm:`` for vLLM dashboards).

Each server owns one :class:`ServeMetrics` with its own registry, so tests and several servers in one process never
share counters. Names follow vLLM (``spec_decode_num_drafts_total``, ``time_to_first_token_seconds`` ...) with the
``model_name`` label; router and savings counters are tokenwise's own additions under the same prefix.

Savings counters: one lever and one unit per metric, split into ``*_saved_*`` and ``*_spent_*`` (Prometheus counters
only go up, so a lever that costs more is counted as spent, never dropped); a lever's net effect is saved − spent.
Every help text says where the quality figure beside the saving is (:data:`QUALITY_WHERE`).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
E2E_BUCKETS = (0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
QUALITY_WHERE = "per stack: bits per byte and chrF vs the baseline in <run>/measure/summary.json (tokenwise measure)"


class ServeMetrics:
    """Every series the server exports; ``prefix`` is ``tokenwise`` or ``vllm``."""

    def __init__(self, prefix: str = "tokenwise"):
        disable_created_metrics()  # as vLLM does: no *_created series next to every counter
        self.registry = CollectorRegistry()
        self.prefix = prefix
        m, r = ["model_name"], self.registry
        p = f"{prefix}:"
        self.num_drafts = Counter(p + "spec_decode_num_drafts", "Speculative steps (drafts proposed).", m, registry=r)
        self.num_draft_tokens = Counter(p + "spec_decode_num_draft_tokens", "Draft tokens proposed.", m, registry=r)
        self.num_accepted_tokens = Counter(
            p + "spec_decode_num_accepted_tokens", "Draft tokens accepted by the target.", m, registry=r
        )
        self.accepted_per_pos = Counter(
            p + "spec_decode_num_accepted_tokens_per_pos",
            "Accepted draft tokens by position in the draft.",
            ["model_name", "position"],
            registry=r,
        )
        self.prompt_tokens = Counter(p + "prompt_tokens", "Prompt tokens processed.", m, registry=r)
        self.generation_tokens = Counter(p + "generation_tokens", "Tokens generated.", m, registry=r)
        self.ttft = Histogram(
            p + "time_to_first_token_seconds", "Time to first token.", m, buckets=LATENCY_BUCKETS, registry=r
        )
        self.tpot = Histogram(
            p + "time_per_output_token_seconds", "Inter-token latency.", m, buckets=LATENCY_BUCKETS, registry=r
        )
        self.e2e = Histogram(p + "e2e_request_latency_seconds", "Request latency.", m, buckets=E2E_BUCKETS, registry=r)
        self.queue_time = Histogram(
            p + "request_queue_time_seconds", "Time waiting for a slot.", m, buckets=E2E_BUCKETS, registry=r
        )
        self.running = Gauge(p + "num_requests_running", "Requests generating now.", registry=r)
        self.waiting = Gauge(p + "num_requests_waiting", "Requests waiting for a slot.", registry=r)
        self.success = Counter(
            p + "request_success", "Finished requests.", ["model_name", "finished_reason"], registry=r
        )
        self.rejected = Counter(p + "request_rejected", "Requests refused (4xx/429).", ["reason"], registry=r)
        self.router_requests = Counter(
            p + "router_requests", "Routed requests by the model that answered.", ["router", "model_name"], registry=r
        )
        self.router_escalations = Counter(
            p + "router_escalations",
            "Escalations to a larger model.",
            ["router", "from_model", "to_model"],
            registry=r,
        )
        self.cost = Counter(p + "request_cost_usd", "Cost of answered requests in USD.", m, registry=r)
        q_lm = f"Quality: not measured per request; {QUALITY_WHERE}."
        q_spec = "Quality: unchanged (greedy output is the target's token for token; sampling keeps its distribution)."
        self.baseline_tokens = Counter(
            p + "baseline_tokenizer_tokens",
            "Tokens the baseline tokenizer counts on the prompt and completion text served (compare with "
            f"prompt_tokens + generation_tokens). Unit: baseline-tokenizer tokens. {q_lm}",
            m,
            registry=r,
        )
        self.tokenizer_saved = Counter(
            p + "tokenizer_saved_tokens",
            "Tokenizer lever, requests billed fewer tokens than the baseline tokenizer counts on the same text: the "
            f"difference. Unit: tokens (baseline-tokenizer count minus billed). {q_lm}",
            m,
            registry=r,
        )
        self.tokenizer_spent = Counter(
            p + "tokenizer_spent_tokens",
            "Tokenizer lever, requests billed more tokens than the baseline tokenizer counts on the same text: the "
            f"difference. Unit: tokens (billed minus baseline-tokenizer count). {q_lm}",
            m,
            registry=r,
        )
        self.routing_saved = Counter(
            p + "routing_saved_usd",
            "Routing lever, requests that cost less than the largest model answering the same tokens: the "
            "difference. Unit: USD. Quality: router_calibrated_quality_share (share of the largest model's quality "
            f"at the calibrated threshold, on held-out requests); {QUALITY_WHERE}.",
            ["router"],
            registry=r,
        )
        self.routing_spent = Counter(
            p + "routing_spent_usd",
            "Routing lever, requests that cost more than the largest model alone (escalations pay for the cheaper "
            "model's preview): the difference. Unit: USD. Quality: as routing_saved_usd.",
            ["router"],
            registry=r,
        )
        self.router_quality = Gauge(
            p + "router_calibrated_quality_share",
            "Share of the largest model's quality (bytes per bit of held-out references) at the router's calibrated "
            "threshold, from serve/router.json. Unit: ratio.",
            ["router"],
            registry=r,
        )
        self.spec_saved_passes = Counter(
            p + "speculative_saved_target_passes",
            "Speculation: target forward passes not run (output tokens minus target passes, prefill included). "
            f"Unit: target forward passes. {q_spec}",
            m,
            registry=r,
        )
        self.spec_draft_passes = Counter(
            p + "speculative_draft_passes",
            "Speculation's price in draft-model forward passes. Unit: draft forward passes. " + q_spec,
            m,
            registry=r,
        )
        self.spec_saved_s = Counter(
            p + "speculative_saved_seconds",
            "Speculation, requests decoded faster than plain decoding would (plain step time measured for the model "
            f"pair at load x tokens, minus the decode time): the difference. Unit: seconds. {q_spec}",
            m,
            registry=r,
        )
        self.spec_spent_s = Counter(
            p + "speculative_spent_seconds",
            "Speculation, requests decoded slower than plain decoding would: the difference. Unit: seconds. " + q_spec,
            m,
            registry=r,
        )
        self.spec_auto_off = Counter(
            p + "speculative_auto_off_requests",
            "Requests whose speculation switched itself off (acceptance predicted a slowdown). Unit: requests.",
            m,
            registry=r,
        )
        # continuous batching (vLLM V1 names; the hit-rate gauge is vLLM V0's, without its gpu_ prefix)
        self.prefix_queries = Counter(
            p + "prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", m, registry=r
        )
        self.prefix_hits = Counter(
            p + "prefix_cache_hits", "Prompt tokens found in the prefix cache (prefill tokens saved).", m, registry=r
        )
        self.prefix_hit_rate = Gauge(
            p + "prefix_cache_hit_rate", "Prefix cache hits / queries in tokens since start.", m, registry=r
        )
        self.kv_usage = Gauge(
            p + "kv_cache_usage_perc", "Share of the KV cache budget held by live requests (1 = full).", m, registry=r
        )

    def observe_spec(self, model: str, drafts: int, draft_tokens: int, accepted: int, per_pos: Sequence[int]) -> None:
        """Add one request's speculative decoding counters."""
        self.num_drafts.labels(model).inc(drafts)
        self.num_draft_tokens.labels(model).inc(draft_tokens)
        self.num_accepted_tokens.labels(model).inc(accepted)
        for pos, n in enumerate(per_pos):
            self.accepted_per_pos.labels(model, str(pos)).inc(n)

    def observe_latency(self, model: str, ttft: float, itls: Sequence[float], e2e: float, queue: float) -> None:
        """Add one request's TTFT, each inter-token interval, end-to-end and queue time (seconds)."""
        self.ttft.labels(model).observe(ttft)
        for dt in itls:
            self.tpot.labels(model).observe(dt)
        self.e2e.labels(model).observe(e2e)
        self.queue_time.labels(model).observe(queue)

    def split(self, saved: Counter, spent: Counter, labels: tuple[str, ...], amount: float) -> None:
        """Count a signed saving: positive on the ``saved`` counter, negative (as a positive cost) on ``spent``."""
        if amount > 0:
            saved.labels(*labels).inc(amount)
        elif amount < 0:
            spent.labels(*labels).inc(-amount)

    def observe_prefix(self, model: str, prompt_tokens: int, cached_tokens: int) -> None:
        """Add one request's prefix-cache lookup: its prompt tokens and how many came from the cache."""
        self.prefix_queries.labels(model).inc(prompt_tokens)
        self.prefix_hits.labels(model).inc(cached_tokens)

    def observe_kv(self, model: str, snapshot: dict) -> None:
        """Set the KV usage and prefix hit-rate gauges from a batch engine's snapshot."""
        self.kv_usage.labels(model).set(snapshot["kv_usage"])
        self.prefix_hit_rate.labels(model).set(snapshot["prefix_cache_hit_rate"])

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
