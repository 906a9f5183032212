"""Prefect task runners from config: a thread pool by default, Ray through prefect-ray for per-shard fan-out.

``prefect: task_runner: {kind: ray, address: ray://head:10001}`` makes a flow's ``.map`` tasks run as Ray tasks.
prefect-ray in ephemeral mode starts a temporary Prefect server inside every Ray worker (SQLite "database is locked",
slow cold starts), so the Ray runner requires a real Prefect server (``PREFECT_API_URL``, e.g. ``tokenwise prefect
up``) and passes its URL to the workers in ``runtime_env`` (Ray workers do not inherit the driver's environment).
Point ``address`` at a long-lived cluster (``ray start --head``); without one a local instance lives for one flow run.

:func:`token_counts_flow` is the per-shard form of the ``tokens`` stage: one task per shard, merged at the end;
``flows.common.run_group`` runs it (:data:`FANOUT`) on the configured runner instead of one stage task.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect import flow, get_run_logger, task

from curation.executors import runtime_env
from curation.plans import token_counts
from curation.plans.token_counts import TokenCountConfig, count_job, merge_jobs, shard_jobs, stored_counts
from tokenwise.config import load_section
from tokenwise.orchestration import TaskRunnerConfig


class TaskRunnerError(RuntimeError):
    """A task runner that cannot start; the message names the fix."""


def build_task_runner(cfg: TaskRunnerConfig) -> Any:
    """A ``ThreadPoolTaskRunner`` or a ``RayTaskRunner`` connected as ``cfg`` says."""
    if cfg.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner  # heavy: deferred until used

        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    return _ray_runner(cfg)


def _ray_runner(cfg: TaskRunnerConfig) -> Any:
    from prefect.settings import PREFECT_API_URL  # heavy: deferred until used

    try:
        from prefect_ray import RayTaskRunner  # heavy: deferred until used
    except ImportError as e:  # pragma: no cover - a dependency
        raise TaskRunnerError("task_runner kind: ray needs prefect-ray: pip install prefect-ray==0.6.0") from e

    api = PREFECT_API_URL.value()
    if cfg.require_server and not api:
        raise TaskRunnerError(
            "task_runner kind: ray needs a real Prefect server (ephemeral mode starts one inside every Ray worker): "
            "start one with `tokenwise prefect up` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    env = runtime_env().get("env_vars", {}) | ({"PREFECT_API_URL": api} if api else {})
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # ray 2.60 clients of `ray start --head` clusters
    init = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
    if not address:
        init["include_dashboard"] = False
    return RayTaskRunner(address=address, init_kwargs=init)


def describe(cfg: TaskRunnerConfig) -> str:
    """One line saying where tasks run (printed by flows and commands)."""
    if cfg.kind == "thread":
        return f"task_runner=thread max_workers={cfg.max_workers}"
    return f"task_runner=ray address={cfg.address or os.environ.get('RAY_ADDRESS') or 'local'}"


def with_task_runner(flow_obj: Any, cfg: TaskRunnerConfig) -> Any:
    """``flow_obj`` with its task runner replaced by the one ``cfg`` describes."""
    return flow_obj.with_options(task_runner=build_task_runner(cfg))


# ---------------------------------------------------------------- per-shard fan-out


@task(name="count-shard", task_run_name="count-{job[0]}")
def count_shard_task(cfg_dump: dict, run_dir: str, job: tuple[str, str, str]) -> dict[str, Any]:
    """Count one shard (skipped when its output already holds the same inputs hash); returns where it ran."""


    count_job(cfg_dump, run_dir, job)
    return {"shard": job[0], "host": socket.gethostname(), "pid": os.getpid()}


@flow(name="tokenwise-token-counts")
def token_counts_flow(run_dir: str, counts: dict | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Token counts of a run's shards, one task per shard on the flow's task runner, merged into ``counts.json``.

    Skips everything when the stage marker matches (as ``tokenwise curate tokens`` does); otherwise each shard task
    still skips a shard whose output holds its inputs hash.

    Args:
        run_dir: Run directory.
        counts: ``TokenCountConfig`` fields (tokenizers, source, split); executor fields are ignored here.
        config_path: YAML config whose ``tokens:`` section is used when ``counts`` is not given.
    """
    if counts is None and config_path:
        cfg = load_section(config_path, "tokens", TokenCountConfig)
    else:
        cfg = TokenCountConfig(**(counts or {}))
    out_dir, jobs = shard_jobs(cfg, run_dir)
    if (done := stored_counts(out_dir, jobs)) is not None:
        get_run_logger().info("token counts: up to date (%d shards)", len(jobs))
        return done
    futures = count_shard_task.map([cfg.model_dump()] * len(jobs), [run_dir] * len(jobs), jobs)
    workers = [f.result() for f in futures]
    pids = sorted({w["pid"] for w in workers})
    where = {"executor": "prefect", "hosts": sorted({w["host"] for w in workers}), "pids": pids, "shards": len(jobs)}
    get_run_logger().info("token counts: %d shards on %d worker processes", len(jobs), len(pids))
    return merge_jobs(out_dir, jobs, where)


# stage function -> (its per-shard flow, the function summarising that flow's result in one line): run_group runs
# these stages as a subflow on `prefect: task_runner:` (one task per shard, threads or Ray) instead of one task
FANOUT: dict[Any, tuple[Any, Any]] = {token_counts.run_stage: (token_counts_flow, token_counts.fmt_counts)}
