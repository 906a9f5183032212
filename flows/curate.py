"""Curation flow (score, dedup, decide, plan): a thin wrapper over curation/score.py, dedup.py, decide.py, plans.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import MAX_ROWS, glob_json, publish_table, read_json_if, rows_of


def kept_dropped_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step kept/dropped by language from ``curated/stats.json`` (steps → languages → counters)."""
    rows: list[dict[str, Any]] = []
    steps = stats.get("steps") or stats.get("by_step") or {}
    for step, per in steps.items() if isinstance(steps, dict) else []:
        langs = per.get("by_lang", per) if isinstance(per, dict) else {}
        for lang, c in langs.items():
            if isinstance(c, dict):
                rows.append({"step": step, "lang": lang, **{k: v for k, v in c.items() if not isinstance(v, dict)}})
    if not rows:
        rows = rows_of(stats.get("by_lang", {}), "lang")
    return rows_of(rows[:MAX_ROWS])


def publish_curate(group: str, run_dir: str) -> None:
    """Kept/dropped per step and language, and each sampling plan's per-language weights."""
    stats = read_json_if(run_dir, "curated", "stats.json")
    if isinstance(stats, dict):
        publish_table(group, "kept-dropped", kept_dropped_rows(stats), "per-step kept/dropped by language")
    plans = [
        {"plan": rel[-1].removesuffix(".json"), **r}
        for rel, plan in glob_json(run_dir, "plans", "*.json")
        if isinstance(plan, dict)
        for r in rows_of(plan.get("languages") or plan.get("weights") or {}, "lang")
    ]
    publish_table(group, "plans", plans[:MAX_ROWS], "sampling plans: per-language weight and tokens")


@flow(name="tokenwise-curate", flow_run_name=run_name("curate"), persist_result=True)
def curate_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Score, deduplicate and decide on every corpus document, then write the sampling plans.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("curate", params, publish=publish_curate)
