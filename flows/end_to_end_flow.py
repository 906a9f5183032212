"""End-to-end flow: every stage flow whose library exists, in data-flow order, on one config and run directory."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.catalog import group_flow
from flows.common import run_name
from flows.params import EndToEndParams, StageParams
from flows.tasks import artifact_key, validate_config
from tokenwise.stages import REGISTRY


def selected_groups(params: EndToEndParams) -> list[str]:
    """Available groups in data-flow order, filtered by ``only`` and cut after ``stop_after``."""
    groups = [g for g in REGISTRY.demo_groups() if not params.only or g in params.only]
    if params.stop_after in groups:
        groups = groups[: groups.index(params.stop_after) + 1]
    return groups


@flow(name="tokenwise-end-to-end", flow_run_name=run_name("end-to-end"), persist_result=True)
def end_to_end_flow(params: EndToEndParams = EndToEndParams()) -> dict[str, Any]:
    """Run corpus → curate → tokenizer → finetune → quantize → measure → report (each a subflow).

    Args:
        params: Stage groups to run, config file and run directory.
    """
    validate_config("end-to-end", params.config_path)  # every section, before hours of stages start
    groups = selected_groups(params)
    stage_params = StageParams(config_path=params.config_path, run_dir=params.run_dir)
    progress = create_progress_artifact(0.0, key=artifact_key("end-to-end", "progress"), description="stage groups")
    out: dict[str, Any] = {}
    for i, group in enumerate(groups):
        out[group] = group_flow(group)(stage_params)
        update_progress_artifact(progress, 100.0 * (i + 1) / len(groups), description=f"{group} done")
    return out
