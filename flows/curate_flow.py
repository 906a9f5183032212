"""Curation flow (score, dedup, decide, tokens, plan): a thin wrapper over curation/signals, decide and plans."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import CurateParams
from flows.report_flow import write_and_publish_report
from flows.tasks import MAX_ROWS, glob_json, publish_table, read_json_if, rows_of

KEPT_DROPPED_COLUMNS = ("step", "group", "docs_in", "docs_kept", "docs_dropped", "docs_dropped_share")


def kept_dropped_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step kept/dropped by language from ``curated/summary.json`` (its per-step table, rows grouped by lang)."""
    rows = [r for r in summary.get("steps", []) if r.get("group_by") == "lang"]
    out = []
    for r in rows:
        row = {("lang" if k == "group" else k): r[k] for k in KEPT_DROPPED_COLUMNS if k in r}
        row |= {k: v for k, v in r.items() if k.startswith("tokens_") and k.endswith(("_in", "_dropped"))}
        out.append(row)
    return rows_of(out[:MAX_ROWS])


def publish_curate(group: str, run_dir: str) -> None:
    """Kept/dropped per step and language, and each sampling plan's per-language weights."""
    summary = read_json_if(run_dir, "curated", "summary.json")
    if isinstance(summary, dict):
        publish_table(group, "kept-dropped", kept_dropped_rows(summary), "per-step kept/dropped by language")
    plans = [
        {"plan": rel[-1].removesuffix(".json"), **r}
        for rel, plan in glob_json(run_dir, "plans", "*.json")
        if isinstance(plan, dict)
        for r in rows_of(plan.get("languages") or plan.get("weights") or {}, "lang")
    ]
    publish_table(group, "plans", plans[:MAX_ROWS], "sampling plans: per-language weight and tokens")
    write_and_publish_report(run_dir)


@flow(name="tokenwise-curate", flow_run_name=run_name("curate"), persist_result=True)
def curate_flow(params: CurateParams = CurateParams()) -> dict[str, Any]:
    """Score, deduplicate and decide on every corpus document, then write the sampling plans.

    Args:
        params: Config file, run directory and the decide rules' thresholds (blank = the config's).
    """
    return run_group("curate", params, publish=publish_curate)
