"""Export the ledger in the import shapes of LiteLLM (spend logs), Langfuse (generations) and OpenTelemetry (spans).

Savings stay in metadata/attributes under ``tokenwise.*`` so that none of these tools sums them as usage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from serving.measure.ledger import LITELLM_COLUMNS

# savings (baseline tokenizer on this row's own text, signed) with the row's quality figures beside them
SAVINGS_KEYS = ("stack", "lever", "baseline_stack", "baseline_tokenizer", "baseline_total_tokens", "baseline_spend",
                "saved_tokens", "saved_spend", "language", "domain", "routed_model", "quality_metric",
                "quality_value", "bits_per_byte", "spec_auto_off", "price_table_hash")  # fmt: skip


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1e9)


def to_litellm(row: dict[str, Any]) -> dict[str, Any]:
    """A LiteLLM SpendLogs row; tokenwise columns go into ``metadata``."""
    out = {k: row[k] for k in LITELLM_COLUMNS if k != "metadata"}
    meta = dict(row.get("metadata") or {})
    meta["tokenwise"] = {k: row.get(k) for k in SAVINGS_KEYS}
    out["metadata"] = meta
    return out


def to_langfuse(row: dict[str, Any]) -> dict[str, Any]:
    """A Langfuse generation-create event body (ingestion API shape)."""
    return {
        "id": row["request_id"],
        "type": "generation-create",
        "timestamp": row["startTime"],
        "body": {
            "id": row["request_id"],
            "name": f"tokenwise:{row['stack']}",
            "startTime": row["startTime"],
            "endTime": row["endTime"],
            "completionStartTime": row["completionStartTime"],
            "model": row["model"],
            "usageDetails": {"input": row["prompt_tokens"], "output": row["completion_tokens"],
                             "total": row["total_tokens"]},
            "costDetails": {"input": row["spend_prompt"], "output": row["spend_completion"], "total": row["spend"]},
            "level": "DEFAULT" if row["status"] == "success" else "ERROR",
            "metadata": {k: row.get(k) for k in SAVINGS_KEYS},
        },
    }  # fmt: skip


def to_otel(row: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON span with GenAI semantic-convention attributes (``gen_ai.usage.*``)."""
    attrs = {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.system": "tokenwise",
        "gen_ai.request.model": row["model"],
        "gen_ai.response.model": row["routed_model"] or row["model"],
        "gen_ai.response.id": row["request_id"],
        "gen_ai.usage.input_tokens": row["prompt_tokens"],
        "gen_ai.usage.output_tokens": row["completion_tokens"],
        **{f"tokenwise.{k}": row.get(k) for k in SAVINGS_KEYS},
    }
    return {
        "traceId": row["request_id"].replace("-", "")[:32].ljust(32, "0"),
        "spanId": row["request_id"].replace("-", "")[-16:].rjust(16, "0"),
        "name": f"text_completion {row['model']}",
        "kind": 3,  # SPAN_KIND_CLIENT
        "startTimeUnixNano": str(_ns(row["startTime"])),
        "endTimeUnixNano": str(_ns(row["endTime"])),
        "attributes": [{"key": k, "value": _otel_value(v)} for k, v in attrs.items() if v is not None],
        "status": {"code": 1 if row["status"] == "success" else 2},
    }


def _otel_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def export(rows: Sequence[dict[str, Any]], to: Literal["litellm", "langfuse", "otel"]) -> str:
    """The ledger as JSONL (litellm, langfuse batch events) or one OTLP/JSON ``resourceSpans`` document (otel)."""
    if to == "otel":
        doc = {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tokenwise-measure"}}]},
            "scopeSpans": [{"scope": {"name": "tokenwise.measure"}, "spans": [to_otel(r) for r in rows]}],
        }]}  # fmt: skip
        return json.dumps(doc, default=str)
    fn = {"litellm": to_litellm, "langfuse": to_langfuse}[to]
    return "".join(json.dumps(fn(r), default=str, ensure_ascii=False) + "\n" for r in rows)
