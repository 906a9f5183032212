"""End-to-end flow: every stage flow whose library exists, in data-flow order, on one config and run directory."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.common import run_name
from flows.params import EndToEndParams, StageParams
from flows.registry import groups_in_order
from flows.tasks import artifact_key, validate_config


def group_flows() -> dict[str, Any]:
    """Stage group → its flow (imported here so each flows/<stage>.py stays independent)."""
    from flows.corpus_flow import corpus_flow
    from flows.curate_flow import curate_flow
    from flows.finetune_flow import finetune_flow
    from flows.measure_flow import measure_flow
    from flows.quality_flow import quality_flow
    from flows.quantize_flow import quantize_flow
    from flows.report_flow import report_flow
    from flows.serve_flow import serve_flow
    from flows.tokenizer_flow import tokenizer_flow

    return {
        "corpus": corpus_flow,
        "quality": quality_flow,
        "curate": curate_flow,
        "tokenizer": tokenizer_flow,
        "finetune": finetune_flow,
        "quantize": quantize_flow,
        "serve": serve_flow,
        "measure": measure_flow,
        "report": report_flow,
    }


def selected_groups(params: EndToEndParams) -> list[str]:
    """Available groups in data-flow order, filtered by ``only`` and cut after ``stop_after``."""
    groups = [g for g in groups_in_order() if not params.only or g in params.only]
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
    flows = group_flows()
    groups = selected_groups(params)
    stage_params = StageParams(config_path=params.config_path, run_dir=params.run_dir)
    progress = create_progress_artifact(0.0, key=artifact_key("end-to-end", "progress"), description="stage groups")
    out: dict[str, Any] = {}
    for i, group in enumerate(groups):
        out[group] = flows[group](stage_params)
        update_progress_artifact(progress, 100.0 * (i + 1) / len(groups), description=f"{group} done")
    return out
