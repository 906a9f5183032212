"""What every stage flow does: hash inputs, run its library entry points as cached tasks, publish artifacts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from flows.params import StageParams
from flows.ray_runner import FANOUT
from flows.settings import KnobError, form_overrides, resolve, settings_markdown, write_settings
from flows.tasks import (
    IO_RETRIES,
    StageFailed,
    artifact_key,
    check_config,
    hash_inputs,
    publish_summary,
    run_fanout,
    stage_task,
)
from tokenwise.config import ConfigError
from tokenwise.orchestration import load_prefect_config
from tokenwise.registry import Stage
from tokenwise.rundir import RunDir, hash_obj
from tokenwise.stages import REGISTRY

Publisher = Callable[[str, str], None]


def run_name(group: str) -> Callable[[], str]:
    """Flow-run name ``<group> · <run dir> · <config> · <UTC time>`` so the runs list says what each run was."""

    def name() -> str:
        from prefect.runtime import flow_run  # heavy: deferred until used

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
    stages = [s for s in REGISTRY.stages_of(group) if s.demo]
    if not stages:
        raise StageFailed(
            f"{group}: no stage of this group is registered.\nWhat to do: add a Stage(..., group={group!r}) entry "
            "to tokenwise/stages.py (see ARCHITECTURE.md, 'Adding a stage')."
        )
    overrides = form_overrides(type(params), params.model_dump(), deployment_defaults())
    settings = effective_settings(group, params, overrides)
    config = settings["stage_config"]  # the config file plus the Run form's values
    inputs = hash_inputs(group, config, params.run_dir, settings["overrides"])
    prefect_cfg = load_prefect_config(config)
    progress = create_progress_artifact(0.0, key=artifact_key(group, "progress"), description=f"{group} stages done")
    results: list[dict[str, Any]] = []
    for i, stage in enumerate(stages):
        # later stages of a group also depend on what the earlier ones wrote
        ref = stage_ref(stage)
        if stage.run in FANOUT:  # one task per shard on the configured task runner (threads or Ray)
            results.append(run_fanout(ref, config, params.run_dir, prefect_cfg.task_runner))
        else:
            step_inputs = {**inputs, "key": hash_obj([inputs["key"], [r["markers"] for r in results]])}
            stage_run = stage_task(ref, params.run_dir, prefect_cfg.result_storage)
            results.append(stage_run(ref, config, params.run_dir, step_inputs))
        update_progress_artifact(progress, 100.0 * (i + 1) / len(stages), description=f"{stage.name} done")
    logger.info("%s done: %s", group, "; ".join(f"{r['stage']}: {r['summary']}" for r in results))
    publish_summary(group, params.run_dir, results, inputs)
    if publish is not None:
        publish(group, params.run_dir)
    return {
        "group": group,
        "run_dir": params.run_dir,
        "inputs_key": inputs["key"],
        "settings": settings,
        "stages": results,
    }


@task(name="effective-settings", **IO_RETRIES)
def effective_settings(group: str, params: StageParams, overrides: dict[str, Any]) -> dict[str, Any]:
    """Validate the config and the Run form's values (``overrides``), then write and publish the effective settings.

    A bad value fails the run here, before anything is written to the run directory, with the
    ``run form: section.key: message`` text of the section's model (see :mod:`flows.settings`).
    """
    check_config(group, params.config_path)
    model = type(params)
    try:
        settings, data = resolve(group, model, params.config_path, params.run_dir, overrides)
    except (KnobError, ConfigError) as e:
        raise StageFailed(
            f"{group}: a Run form value is invalid:\n{e}\nWhat to do: change that field in the deployment's Run form "
            f"(blank = the value in {params.config_path}) and run it again; nothing was written."
        ) from None
    path = write_settings(settings, data, params.run_dir, _flow_run_name())
    create_markdown_artifact(
        settings_markdown(settings, path, model),
        key=artifact_key(group, "settings"),
        description=f"{group}: effective settings (config + Run form)",
    )
    if settings.overrides:
        get_run_logger().info("%s: Run form overrides %s; the stages read %s", group, settings.overrides,
                              settings.stage_config)  # fmt: skip
    return {k: v for k, v in settings.as_dict().items() if k != "sections"}  # the sections are in the file


def deployment_defaults() -> dict[str, Any]:
    """The ``params`` defaults of the deployment this flow run was created from ({} outside a deployment run).

    A knob left at its deployment default means "the config's value" (the form's defaults are the config's values when
    the deployments were served; the config may have changed since).
    """
    from prefect.client.orchestration import get_client  # heavy: deferred until used
    from prefect.context import FlowRunContext  # heavy: deferred until used

    ctx = FlowRunContext.get()
    deployment_id = getattr(getattr(ctx, "flow_run", None), "deployment_id", None)
    if deployment_id is None:
        return {}
    with get_client(sync_client=True) as client:
        params = (client.read_deployment(deployment_id).parameters or {}).get("params")
    return params if isinstance(params, dict) else {}


def _flow_run_name() -> str | None:
    from prefect.runtime import flow_run  # heavy: deferred until used

    return flow_run.name


def stage_ref(stage: Stage) -> dict[str, str]:
    """What a stage task receives (and caches on): the stage's name and its function's import path."""
    return {"name": stage.name, "target": f"{stage.run.__module__}:{stage.run.__qualname__}"}


def publish_markdown_file(run_dir: str, rel: str, key: str, description: str) -> bool:
    """Publish a markdown file the library wrote (e.g. ``report/summary.md``) as an artifact, when present."""
    run = RunDir(run_dir)
    if not run.exists(rel):
        return False
    with run.fs.open(run.path(rel), "r", encoding="utf-8") as f:
        create_markdown_artifact(f.read(), key=key, description=description)
    return True
