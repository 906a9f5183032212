"""What every stage flow does: hash inputs, run its library entry points as cached tasks, publish artifacts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from curation.rundir import RunDir, hash_obj
from flows.params import StageParams, load_prefect_config
from flows.registry import FANOUT, GROUP_MODULES, stages_of
from flows.tasks import StageFailed, artifact_key, hash_inputs, publish_summary, run_fanout, stage_task

Publisher = Callable[[str, str], None]


def run_name(group: str) -> Callable[[], str]:
    """Flow-run name ``<group> · <run dir> · <config> · <UTC time>`` so the runs list says what each run was."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters.get("params") or {}
        if hasattr(params, "model_dump"):
            params = params.model_dump()
        run = Path(str(params.get("run_dir", "run"))).name
        config = Path(str(params.get("config_path", "config"))).stem
        return f"{group}-{run}-{config}-{time.strftime('%m%d-%H%M%S', time.gmtime())}"

    return name


def run_group(group: str, params: StageParams, publish: Publisher | None = None) -> dict[str, Any]:
    """Run every registered stage of ``group`` in order; returns stage → summary plus the inputs key."""
    logger = get_run_logger()
    stages = stages_of(group)
    if not stages:
        raise StageFailed(
            f"{group}: no library entry point is registered yet (modules {', '.join(GROUP_MODULES[group])} have no "
            "entry in curation/pipeline.py DEMO_STAGES).\nWhat to do: land the stage's library and register "
            "`module:function(config_path, run_dir)` in DEMO_STAGES; this flow picks it up without a redeploy."
        )
    inputs = hash_inputs(group, params.config_path, params.run_dir)
    prefect_cfg = load_prefect_config(params.config_path)
    progress = create_progress_artifact(0.0, key=artifact_key(group, "progress"), description=f"{group} stages done")
    results: list[dict[str, Any]] = []
    for i, stage in enumerate(stages):
        # later stages of a group also depend on what the earlier ones wrote
        if stage.target in FANOUT:  # one task per shard on the configured task runner (threads or Ray)
            results.append(run_fanout(asdict(stage), params.config_path, params.run_dir, prefect_cfg.task_runner))
        else:
            step_inputs = {**inputs, "key": hash_obj([inputs["key"], [r["markers"] for r in results]])}
            task = stage_task(asdict(stage), params.run_dir, prefect_cfg.result_storage)
            results.append(task(asdict(stage), params.config_path, params.run_dir, step_inputs))
        update_progress_artifact(progress, 100.0 * (i + 1) / len(stages), description=f"{stage.name} done")
    logger.info("%s done: %s", group, "; ".join(f"{r['stage']}: {r['summary']}" for r in results))
    publish_summary(group, params.run_dir, results, inputs)
    if publish is not None:
        publish(group, params.run_dir)
    return {"group": group, "run_dir": params.run_dir, "inputs_key": inputs["key"], "stages": results}


def publish_markdown_file(run_dir: str, rel: str, key: str, description: str) -> bool:
    """Publish a markdown file the library wrote (e.g. ``report/summary.md``) as an artifact, when present."""
    run = RunDir(run_dir)
    if not run.exists(rel):
        return False
    with run.fs.open(run.path(rel), "r", encoding="utf-8") as f:
        create_markdown_artifact(f.read(), key=key, description=description)
    return True
