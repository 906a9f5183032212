"""Quantization flow: a thin wrapper over serving/quantize.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import glob_json, publish_table, rows_of


def publish_quantize(group: str, run_dir: str) -> None:
    """Size and quality per quantized model, from ``models/*/quantized/*.json`` when present."""
    rows = [
        {"file": "/".join(rel), **{k: v for k, v in m.items() if not isinstance(v, dict | list)}}
        for rel, m in glob_json(run_dir, "models", "*", "quantized", "*.json")
        if isinstance(m, dict)
    ]
    publish_table(group, "models", rows_of(rows), "quantized models: size and quality")


@flow(name="tokenwise-quantize", flow_run_name=run_name("quantize"), persist_result=True)
def quantize_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Quantize the run's models (int8/int4 via torchao) and record size and quality change.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("quantize", params, publish=publish_quantize)
