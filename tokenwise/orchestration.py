"""The ``prefect:`` config section: local server, work pools, refresh schedule, task runner.

A plain pydantic model (no Prefect import), so config validation knows the section on machines without the
orchestration extra; :mod:`flows` reads it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tokenwise.config import BaseConfig, load_section


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
    """The `prefect:` section of a config (defaults when absent)."""
    return load_section(config_path, "prefect", PrefectConfig)
