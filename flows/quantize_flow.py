"""Quantization flow: a thin wrapper over serving/quantize/methods.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import glob_json, publish_table, rows_of


def publish_quantize(group: str, run_dir: str) -> None:
    """Size, speed and quality change per model and quantization method, from ``models/*/quantized/report.json``."""
    rows = [
        {"model": rel[1], **{k: v for k, v in m.items() if not isinstance(v, dict | list)}}
        for rel, report in glob_json(run_dir, "models", "*", "quantized", "report.json")
        if isinstance(report, dict)
        for m in report.get("methods", [])
        if isinstance(m, dict)
    ]
    publish_table(group, "methods", rows_of(rows), "quantization methods per model: size, speed, quality change")


@flow(name="tokenwise-quantize", flow_run_name=run_name("quantize"), persist_result=True)
def quantize_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Quantize the run's models (int8/int4 via torchao) and record size and quality change.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("quantize", params, publish=publish_quantize)
