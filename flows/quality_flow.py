"""Quality-classifier training flow: a thin wrapper over curation/quality/classifier.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import publish_table, read_json_if, rows_of


def publish_quality(group: str, run_dir: str) -> None:
    """Table of the classifier's held-out metrics when the library wrote them."""
    for rel in (
        ("models", "quality", "metrics.json"),
        ("quality", "metrics.json"),
        ("signals", "quality", "metrics.json"),
    ):
        metrics = read_json_if(run_dir, *rel)
        if metrics:
            publish_table(group, "metrics", rows_of(metrics, "metric"), "quality classifier held-out metrics")
            return


@flow(name="tokenwise-quality", flow_run_name=run_name("quality"), persist_result=True)
def quality_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Train the quality classifier on the run's corpus (fastText); writes its model under the run directory.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("quality", params, publish=publish_quality)
