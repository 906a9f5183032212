"""Measurement flow: a thin wrapper over the serving measurement library."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import MeasureParams
from flows.report_flow import write_and_publish_report
from flows.tasks import publish_table, read_json_if, rows_of


def publish_measure(group: str, run_dir: str) -> None:
    """Savings per lever from ``measure/summary.json``."""
    summary = read_json_if(run_dir, "measure", "summary.json")
    if isinstance(summary, dict):
        levers = summary.get("levers") or summary.get("savings") or summary.get("stacks") or summary
        publish_table(group, "savings", rows_of(levers, "lever"), "savings per lever vs the baseline stack")
    write_and_publish_report(run_dir)


@flow(name="tokenwise-measure", flow_run_name=run_name("measure"), persist_result=True)
def measure_flow(params: MeasureParams = MeasureParams()) -> dict[str, Any]:
    """Measure baseline vs optimized stacks on the same requests; writes the ledger and summary.

    Args:
        params: Config file, run directory, requests and stacks (blank = the config's).
    """
    return run_group("measure", params, publish=publish_measure)
