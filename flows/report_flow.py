"""Report flow: a thin wrapper over curation/report (HTML report of the run)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import publish_markdown_file, run_group, run_name
from flows.params import StageParams
from flows.tasks import artifact_key, publish_report_link
from report.build import build_report


def publish_report(group: str, run_dir: str) -> None:
    """The report's short summary as markdown plus a link artifact to ``report/index.html``."""
    publish_markdown_file(run_dir, "report/summary.md", artifact_key(group, "summary-md"), "report headlines")
    publish_report_link(run_dir)


def write_and_publish_report(run_dir: str) -> None:
    """Every curate and measure run rewrites the HTML report and publishes its short version and link."""
    build_report(run_dir)
    publish_report("report", run_dir)


@flow(name="tokenwise-report", flow_run_name=run_name("report"), persist_result=True)
def report_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Build the self-contained HTML report of the run and publish its summary and a link to it.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("report", params, publish=publish_report)
