"""Latency percentiles and goodput: requests per second that meet every SLO (TTFT and time per output token)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default); NaN for no values."""
    v = sorted(x for x in values if x is not None and not math.isnan(x))
    if not v:
        return math.nan
    pos = (len(v) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def tpot_ms(duration_ms: float, ttft_ms: float, completion_tokens: int) -> float:
    """Time per output token after the first (vLLM's TPOT); 0 for single-token completions."""
    return (duration_ms - ttft_ms) / (completion_tokens - 1) if completion_tokens > 1 else 0.0


def meets_slo(ttft_ms: float, tpot: float, ok: bool, ttft_slo_ms: float | None, tpot_slo_ms: float | None) -> bool:
    """A request counts toward goodput when it succeeded and meets every configured SLO."""
    return ok and (ttft_slo_ms is None or ttft_ms <= ttft_slo_ms) and (tpot_slo_ms is None or tpot <= tpot_slo_ms)


def goodput(rows: Sequence[dict], wall_s: float, ttft_slo_ms: float | None, tpot_slo_ms: float | None) -> dict:
    """Goodput (requests/s meeting every SLO) over a replay that took ``wall_s`` seconds, with its parts."""
    good = sum(meets_slo(r["ttft_ms"], r["tpot_ms"], r["status"] == "success", ttft_slo_ms, tpot_slo_ms) for r in rows)
    return {
        "requests": len(rows),
        "meeting_slo": good,
        "slo_attainment": good / len(rows) if rows else math.nan,
        "goodput_rps": good / wall_s if wall_s > 0 else math.nan,
        "throughput_rps": len(rows) / wall_s if wall_s > 0 else math.nan,
        "ttft_slo_ms": ttft_slo_ms,
        "tpot_slo_ms": tpot_slo_ms,
    }
