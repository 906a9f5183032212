"""Serving check flow: a thin wrapper over serving/api/commands.py (router calibration + an API smoke check)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import glob_json, publish_table, rows_of


def publish_serve(group: str, run_dir: str) -> None:
    """Router calibration and the smoke requests' results, from the JSON files under ``<run>/serve/``."""
    for rel, data in glob_json(run_dir, "serve", "*.json"):
        if isinstance(data, dict | list) and not rel[-1].startswith("_"):
            publish_table(group, rel[-1].removesuffix(".json"), rows_of(data), f"serve/{rel[-1]}")


@flow(name="tokenwise-serve", flow_run_name=run_name("serve"), persist_result=True)
def serve_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Calibrate the router thresholds and check the OpenAI-compatible server answers on the run's models.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("serve", params, publish=publish_serve)
