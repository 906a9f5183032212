"""Flow parameters: flat pydantic models the Prefect UI renders as typed forms.

Every field is a primitive, a ``Literal`` or a ``list[str]`` with a description, so a deployment's "Run" form shows one
input per field with its default. The stage knobs themselves live in the YAML config named by ``config_path`` (the same
file and the same pydantic models the CLI uses), so "pass a YAML config path instead" is the normal way to run a flow.

This module imports pydantic only (no Prefect), so ``curation.config.SECTIONS`` can register :class:`PrefectConfig`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from curation.config import BaseConfig

StageGroup = Literal["corpus", "quality", "curate", "tokenizer", "finetune", "quantize", "serve", "measure", "report"]


class StageParams(BaseModel):
    """Which config and run directory a stage flow works on."""

    model_config = ConfigDict(extra="forbid")

    config_path: str = Field(
        "configs/demo.yaml",
        description="YAML config file with one section per stage (validated like `tokenwise config validate`); "
        "relative paths resolve against the worker's working directory.",
    )
    run_dir: str = Field(
        "runs/demo",
        description="Run directory every stage reads and writes (local path or fsspec URL such as s3://bucket/run).",
    )


class EndToEndParams(StageParams):
    """The end-to-end flow: every stage whose library exists, in data-flow order."""

    only: list[StageGroup] = Field(
        default_factory=list,
        description="Run only these stage groups (empty: all available, in data-flow order).",
    )
    stop_after: StageGroup | None = Field(
        None, description="Stop after this stage group (e.g. `curate` to skip training and serving)."
    )


class TaskRunnerConfig(BaseConfig):
    """How a flow's tasks run: ``thread`` (this process) or ``ray`` (a Ray cluster via prefect-ray)."""

    kind: Literal["thread", "ray"] = Field("thread", description="thread: a pool in this process; ray: prefect-ray")
    max_workers: int = Field(4, ge=1, le=1024, description="thread: tasks at once (more threads, more memory)")
    address: str | None = Field(
        None, description="ray: cluster address (ray://head:10001); default RAY_ADDRESS, else a local instance "
        "started for the flow run (slow cold start: prefer a long-lived `ray start --head`)")  # fmt: skip
    require_server: bool = Field(
        True, description="ray: refuse to run without PREFECT_API_URL (ephemeral mode starts a server per worker)"
    )


class PrefectConfig(BaseConfig):
    """`prefect:` config section: local server, work pools, the corpus refresh schedule and the task runner."""

    host: str = Field("127.0.0.1", description="Interface the local Prefect server binds (loopback by default).")
    port: int = Field(4200, ge=1, le=65535, description="Port of the local Prefect server API and UI.")
    home: str = Field("runs/prefect", description="PREFECT_HOME of the local server (SQLite database, results, logs).")
    refresh_cron: str = Field(
        "0 3 * * *", description="Cron schedule (UTC) of the incremental corpus refresh deployment."
    )
    refresh_timezone: str = Field("UTC", description="Timezone the refresh cron is read in.")
    cpu_pool: str = Field("tokenwise-cpu", description="Work pool of CPU stages (corpus, curate, tokenizer ...).")
    gpu_pool: str = Field("gpu", description="Work pool of GPU stages (finetune, quantize, serve, measure).")
    result_storage: str | None = Field(
        None,
        description="Where task results persist: a local directory or an fsspec URL (s3://bucket/prefix); "
        "default: PREFECT_LOCAL_STORAGE_PATH under the server's home.",
    )
    health_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for /api/health after starting.")
    task_runner: TaskRunnerConfig = Field(
        default_factory=TaskRunnerConfig,
        description="Where per-shard tasks of fan-out stages (token counts) run: a thread pool or a Ray cluster.",
    )


def load_prefect_config(config_path: str) -> PrefectConfig:
    """The `prefect:` section of a config (defaults when absent); other sections are validated by the flows."""
    from curation.config import read_yaml, validate_section

    data, lines = read_yaml(config_path)
    return validate_section(data, PrefectConfig, str(config_path), "prefect", lines)
