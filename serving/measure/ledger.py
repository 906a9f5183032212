"""The ledger: one row per request per stack, LiteLLM spend-log columns first, tokenwise columns after.

Counterfactual baseline: for each request, what the **baseline stack** spent on the same request in the same run,
normalised to the same bytes: its prompt tokens (same prompt bytes) plus its completion tokens per output byte times
this row's output bytes. ``saved_tokens = baseline_total_tokens - total_tokens`` and ``saved_spend`` likewise, so a
stack that writes longer answers is not credited for it, and one that writes shorter answers is not either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tokenwise.rundir import atomic_open

LITELLM_COLUMNS = (
    "request_id", "startTime", "endTime", "completionStartTime", "request_duration_ms", "model", "model_id",
    "prompt_tokens", "completion_tokens", "total_tokens", "cache_read_input_tokens", "spend", "status", "metadata",
)  # fmt: skip
TOKENWISE_COLUMNS = (
    "stack", "lever", "levers", "language", "domain", "input_bytes", "output_bytes",
    "reference_tokenizer", "reference_prompt_tokens", "reference_completion_tokens",
    "baseline_stack", "baseline_prompt_tokens", "baseline_completion_tokens", "baseline_total_tokens",
    "baseline_spend", "baseline_output_bytes", "spend_prompt", "spend_completion",
    "saved_tokens", "saved_spend", "routed_model", "escalations", "target_forward_passes", "forward_passes",
    "draft_tokens_proposed", "draft_tokens_accepted", "spec_steps", "spec_alpha", "spec_k", "spec_c",
    "spec_predicted_speedup", "ttft_ms", "itl_ms", "tpot_ms", "tokens_per_second",
    "quality_metric", "quality_value", "bits_per_byte", "completion_text", "price_table_hash",
)  # fmt: skip
COLUMNS = LITELLM_COLUMNS + TOKENWISE_COLUMNS


def add_counterfactuals(rows: list[dict[str, Any]], baseline_stack: str) -> list[dict[str, Any]]:
    """Fill the baseline_* and saved_* columns of every row from the baseline stack's row of the same request."""
    base = {r["request_id"]: r for r in rows if r["stack"] == baseline_stack}
    missing = sorted({r["request_id"] for r in rows} - set(base))
    if missing:
        raise ValueError(f"baseline stack {baseline_stack!r} has no row for requests {missing[:5]}")
    for r in rows:
        b = base[r["request_id"]]
        per_byte = b["completion_tokens"] / b["output_bytes"] if b["output_bytes"] else 0.0
        spend_per_out = (b["spend_completion"] / b["completion_tokens"]) if b["completion_tokens"] else 0.0
        same_bytes = r["output_bytes"] if r["stack"] != baseline_stack else b["output_bytes"]
        comp = b["completion_tokens"] if r["stack"] == baseline_stack else per_byte * same_bytes
        r["baseline_stack"] = baseline_stack
        r["baseline_output_bytes"] = b["output_bytes"]
        r["baseline_prompt_tokens"] = b["prompt_tokens"]
        r["baseline_completion_tokens"] = comp
        r["baseline_total_tokens"] = b["prompt_tokens"] + comp
        r["baseline_spend"] = b["spend_prompt"] + spend_per_out * comp
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
