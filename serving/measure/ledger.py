"""The ledger: one row per request per stack, LiteLLM spend-log columns first, tokenwise columns after.

Counterfactual baseline, on the same text: every row keeps the exact prompt and completion text its stack handled
(``prompt_text``, ``completion_text``), and ``baseline_prompt_tokens`` / ``baseline_completion_tokens`` are the
**baseline stack's tokenizer** applied to that text; ``baseline_spend`` prices them at the baseline model's rates.
``saved_tokens = baseline_total_tokens - total_tokens`` and ``saved_spend = baseline_spend - spend`` are what the
baseline would have billed for exactly this text minus what this stack billed (signed). Never a tokens-per-byte rate
carried over from the baseline's own output: two answers of equal bytes can tokenize very differently. The quality
of the same row (``quality_value`` chrF, ``bits_per_byte``) stands beside it.

Models with different tokenizers: ``prompt_tokens`` / ``completion_tokens`` / ``spend`` are always the answering
model's own tokens at its own prices; the ``baseline_*`` columns recount the same text in the baseline's tokenizer.
A cost router's row also says why it chose the model (``route_reason``), each candidate's predicted tokens, cost and
quality (``route_predictions``, JSON) and whether the request's language was never calibrated (``route_fallback``:
the largest model answered).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.measure.prices import PriceTable
from tokenwise.rundir import atomic_open

LITELLM_COLUMNS = (
    "request_id", "startTime", "endTime", "completionStartTime", "request_duration_ms", "model", "model_id",
    "prompt_tokens", "completion_tokens", "total_tokens", "cache_read_input_tokens", "spend", "status", "metadata",
)  # fmt: skip
TOKENWISE_COLUMNS = (
    "stack", "lever", "levers", "language", "domain", "input_bytes", "output_bytes",
    "reference_tokenizer", "reference_prompt_tokens", "reference_completion_tokens",
    "baseline_stack", "baseline_model", "baseline_tokenizer", "baseline_prompt_tokens", "baseline_completion_tokens",
    "baseline_total_tokens", "baseline_spend", "spend_prompt", "spend_completion",
    "saved_tokens", "saved_spend", "routed_model", "escalations", "route_reason", "route_fallback", "route_language",
    "route_predictions", "target_forward_passes", "forward_passes",
    "draft_tokens_proposed", "draft_tokens_accepted", "spec_steps", "spec_alpha", "spec_k", "spec_c", "spec_v",
    "spec_predicted_speedup", "spec_measured_speedup", "spec_auto_off", "spec_auto_off_at_token",
    "ttft_ms", "itl_ms", "tpot_ms", "tokens_per_second",
    "quality_metric", "quality_value", "bits_per_byte", "prompt_text", "completion_text", "price_table_hash",
)  # fmt: skip
COLUMNS = LITELLM_COLUMNS + TOKENWISE_COLUMNS


def add_counterfactuals(
    rows: list[dict[str, Any]], baseline_stack: str, count: Callable[[str], int], tokenizer_name: str,
    prices: PriceTable,
) -> list[dict[str, Any]]:  # fmt: skip
    """Fill the baseline_* and saved_* columns: ``count`` (the baseline stack's tokenizer) on each row's own
    ``prompt_text`` and ``completion_text``, priced at the model that answered the baseline stack's row."""
    base = {r["request_id"]: r for r in rows if r["stack"] == baseline_stack}
    missing = sorted({r["request_id"] for r in rows} - set(base))
    if missing:
        raise ValueError(f"baseline stack {baseline_stack!r} has no row for requests {missing[:5]}")
    cache: dict[str, int] = {}

    def tokens(text: str) -> int:
        if text not in cache:
            cache[text] = count(text)
        return cache[text]

    for r in rows:
        model = base[r["request_id"]]["model"]
        p, c = tokens(r["prompt_text"]), tokens(r["completion_text"])
        r["baseline_stack"], r["baseline_model"], r["baseline_tokenizer"] = baseline_stack, model, tokenizer_name
        r["baseline_prompt_tokens"], r["baseline_completion_tokens"] = p, c
        r["baseline_total_tokens"] = p + c
        r["baseline_spend"] = prices.cost(model, p, c)
        r["saved_tokens"] = r["baseline_total_tokens"] - r["total_tokens"]
        r["saved_spend"] = r["baseline_spend"] - r["spend"]
    return rows


def _arrow_value(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with the ledger's column order (extra keys dropped, metadata as JSON text)."""
    return pa.Table.from_pylist([{c: _arrow_value(r.get(c)) for c in COLUMNS} for r in rows])


def write_ledger(rows: Sequence[dict[str, Any]], out_dir: str) -> dict[str, str]:
    """Write ``ledger.parquet`` and ``ledger.jsonl`` atomically; returns their paths."""
    paths = {"parquet": f"{out_dir}/ledger.parquet", "jsonl": f"{out_dir}/ledger.jsonl"}
    table = to_table(rows)
    with atomic_open(paths["parquet"], "wb") as f:
        pq.write_table(table, f)
    with atomic_open(paths["jsonl"], "w", encoding="utf-8") as f:
        for r in table.to_pylist():
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return paths


def read_ledger(path: str) -> list[dict[str, Any]]:
    """Read a ledger back (Parquet or JSONL), metadata parsed."""
    if path.endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
    else:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        if isinstance(r.get("metadata"), str):
            r["metadata"] = json.loads(r["metadata"])
    return rows
