"""Pretrain/LoRA flow: a thin wrapper over finetune/.

Training checkpoints inside the library, so a run marked Crashed (missed heartbeat) resumes from the last checkpoint
when the deployment is run again; the flow only reruns the entry point."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import FinetuneParams
from flows.tasks import glob_json, publish_table, rows_of


def publish_finetune(group: str, run_dir: str) -> None:
    """Final metrics of each model (loss, bits per byte) from ``models/<name>/metrics.json``."""
    rows = [
        {"model": rel[1], **{k: v for k, v in m.items() if not isinstance(v, dict | list)}}
        for rel, m in glob_json(run_dir, "models", "*", "metrics.json")
        if isinstance(m, dict)
    ]
    publish_table(group, "metrics", rows_of(rows), "final metrics per model")


@flow(name="tokenwise-finetune", flow_run_name=run_name("finetune"), persist_result=True)
def finetune_flow(params: FinetuneParams = FinetuneParams()) -> dict[str, Any]:
    """Pretrain the small base/draft model and fine-tune LoRA adapters; resumes from the library's checkpoints.

    Args:
        params: Config file, run directory and the LoRA knobs (blank = the config's).
    """
    return run_group("finetune", params, publish=publish_finetune)
