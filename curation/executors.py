"""One factory for datatrove executors: the same pipeline runs locally, on a Ray cluster or on Slurm.

A stage config mixes in :class:`ExecutorFields` (``executor: local|ray|slurm``, ``address``, ``time_limit`` ...) and
calls :func:`run_pipeline` instead of constructing ``LocalPipelineExecutor`` itself. What this adds to datatrove:

- **Where it runs** is logged once (``executor=ray address=... workers=... cluster_cpus=...``) and a watcher thread
  logs per-rank progress from datatrove's completion markers (``progress=3/8 ranks_done=0-1,5``).
- **Ray reruns.** datatrove 0.10.1's Ray executor hangs when a rank's worker child dies (``time=None``) and raises a
  ``KeyError`` when a time limit is set; it also returns without raising when a rank fails. So a time limit is always
  set and ``run()`` is repeated (up to ``retries`` times) while ranks lack their completion marker; stages write every
  output atomically and reruns skip finished work, so a rerun neither loses nor duplicates rows.
- **Connecting.** ``address`` (or ``RAY_ADDRESS``) connects to a running cluster with ``RAY_AUTH_MODE=token`` set on
  the client (ray 2.60 needs it for ``ray start --head`` clusters); without one a local in-process instance is started
  and shut down again. Ray workers do not inherit the driver's environment, so the variables in :data:`FORWARD_ENV`
  travel in ``runtime_env``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

from pydantic import Field

from tokenwise.config import BaseConfig
from tokenwise.log import kv

log = logging.getLogger(__name__)

# environment the Ray workers need from the driver (Prefect API, offline switches, our own knobs)
FORWARD_ENV = ("PREFECT_API_URL", "PREFECT_API_KEY", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
               "TIKTOKEN_CACHE_DIR", "HF_HOME", "PYTHONPATH")  # fmt: skip
FORWARD_PREFIXES = ("TOKENWISE_",)

# fields that choose where a stage runs, not what it computes: stages leave them out of their inputs hashes
PLACEMENT_FIELDS = frozenset({"executor", "address", "time_limit", "retries", "cpus_per_task", "mem_per_cpu_gb",
                              "slurm_partition", "slurm_time", "slurm_venv", "slurm_sbatch_args"})  # fmt: skip


class ExecutorError(RuntimeError):
    """A pipeline that did not complete; the message names the incomplete ranks and their log folder."""


class ExecutorFields(BaseConfig):
    """Where a stage's datatrove pipeline runs; mixed into stage configs (corpus, score, dedup, token counts)."""

    executor: Literal["local", "ray", "slurm"] = Field(
        "local", description="local: processes on this machine; ray: a Ray cluster (address/RAY_ADDRESS or an "
        "in-process one); slurm: sbatch job arrays (submits and returns)")  # fmt: skip
    address: str | None = Field(
        None, description="Ray cluster address (ray://host:10001 or host:6379); default RAY_ADDRESS, else start a "
        "local in-process instance")  # fmt: skip
    time_limit: int = Field(
        3600, ge=10, le=7 * 86400, description="ray: seconds one rank may run before it is killed and rerun "
        "(datatrove hangs on a dead worker without one); larger for big shards")  # fmt: skip
    retries: int = Field(2, ge=0, le=20, description="ray: reruns of run() while ranks are incomplete")
    cpus_per_task: int = Field(1, ge=1, le=256, description="ray/slurm: CPUs reserved per rank")
    mem_per_cpu_gb: float = Field(
        1.0, gt=0, le=512, description="ray/slurm: memory reserved per CPU; too high and ranks wait for memory"
    )
    slurm_partition: str | None = Field(None, description="slurm: partition (required for executor: slurm)")
    slurm_time: str = Field("04:00:00", description="slurm: time limit per job array task (HH:MM:SS)")
    slurm_venv: str | None = Field(None, description="slurm: virtualenv activated on the nodes (default: this one)")
    slurm_sbatch_args: dict[str, str] = Field(default_factory=dict, description="slurm: extra #SBATCH options")


def placement(cfg: ExecutorFields) -> dict[str, Any]:
    """The fields of a config that choose where it runs (for logs and manifests)."""
    return {k: getattr(cfg, k) for k in ("executor", "address", "tasks", "workers") if hasattr(cfg, k)}


def run_pipeline(
    pipeline: Sequence[Any],
    cfg: ExecutorFields,
    *,
    tasks: int,
    workers: int,
    logging_dir: str,
    skip_completed: bool = True,
    start_method: str = "forkserver",  # datatrove's default: safe when the caller already runs threads
    stage: str = "pipeline",
) -> dict[str, Any]:
    """Run a datatrove pipeline on the executor ``cfg`` names; returns ``{executor, address, workers, attempts}``.

    ``skip_completed=False`` means "do not trust markers of earlier invocations" (stages that resume by their own
    output hashes); on Ray the markers of this invocation still decide which ranks a rerun repeats.
    """
    workers = max(1, min(workers, tasks))
    if cfg.executor == "local":
        return _run_local(pipeline, tasks, workers, logging_dir, skip_completed, start_method, stage)
    if cfg.executor == "slurm":
        return _run_slurm(pipeline, cfg, tasks, workers, logging_dir, skip_completed, stage)
    return _run_ray(pipeline, cfg, tasks, workers, logging_dir, skip_completed, stage)


# threads that do not make a fork unsafe: jemalloc's background threads (fork handlers), polars' idle out-of-core
# cleaner, and up to one more thread named like the interpreter (OpenBLAS's server thread, fork handlers)
_FORK_SAFE_THREADS = ("jemalloc_bg_thd", "polars-ooc-clea")


def fork_is_safe() -> bool:
    """True when forking this process cannot hang the child: Linux, no Python thread besides this one, and no native
    thread pool started (polars/rayon, tokio, OpenMP: a forked child would wait on pool threads it does not have)."""
    if sys.platform != "linux" or threading.active_count() != 1:
        return False
    try:
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    except OSError:
        return False
    others = [n for n in names if n not in _FORK_SAFE_THREADS]
    return len(others) <= 2 and all(n == "python" for n in others)  # the main thread + OpenBLAS's


def resolve_start_method(method: str) -> str:
    """``auto``: ``fork`` when :func:`fork_is_safe` (children start in milliseconds instead of re-importing the
    stage's modules), else ``forkserver``; other values as given."""
    if method != "auto":
        return method
    return "fork" if fork_is_safe() else "forkserver"


def _run_local(pipeline, tasks, workers, logging_dir, skip_completed, start_method, stage) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor  # heavy: deferred until used

    start_method = resolve_start_method(start_method)
    log.info(kv(stage=stage, executor="local", tasks=tasks, workers=workers, start=start_method, logs=logging_dir))
    ex = LocalPipelineExecutor(pipeline=list(pipeline), tasks=tasks, workers=workers, start_method=start_method,
                               logging_dir=logging_dir, skip_completed=skip_completed)  # fmt: skip
    ex.run()  # no watcher thread here: the pool forks, and a fork while a thread holds a lock can deadlock
    _report(ex, stage, final=True)
    return {"executor": "local", "address": None, "workers": workers, "attempts": 1}


def _run_ray(pipeline, cfg, tasks, workers, logging_dir, skip_completed, stage) -> dict[str, Any]:
    from datatrove.executor import RayPipelineExecutor  # heavy: deferred until used

    with ray_session(cfg.address, num_cpus=workers * cfg.cpus_per_task) as info:
        log.info(kv(stage=stage, executor="ray", address=info["address"], tasks=tasks, workers=workers,
                    cluster_cpus=info["cpus"], nodes=info["nodes"], logs=logging_dir))  # fmt: skip
        if not skip_completed:
            _clear_completions(logging_dir)
        attempts = 0
        while True:
            attempts += 1
            ex = RayPipelineExecutor(pipeline=list(pipeline), tasks=tasks, workers=workers, logging_dir=logging_dir,
                                     skip_completed=True, time=cfg.time_limit, cpus_per_task=cfg.cpus_per_task,
                                     mem_per_cpu_gb=cfg.mem_per_cpu_gb)  # fmt: skip
            error = _run_once(ex, stage)
            missing = ex.get_incomplete_ranks(range(tasks), skip_completed=True)
            if not missing:
                break
            log.warning(kv(stage=stage, attempt=attempts, incomplete_ranks=missing[:20], error=error or "-"))
            if attempts > cfg.retries:
                raise ExecutorError(f"{stage}: ranks {missing[:20]} did not complete after {attempts} attempts on Ray "
                                    f"({error or 'no exception'}); see the task logs under {logging_dir}/logs; "
                                    "rerun the command to resume (finished ranks are kept)")  # fmt: skip
        return {"executor": "ray", "address": info["address"], "workers": workers, "attempts": attempts}


def _run_once(ex: Any, stage: str) -> str | None:
    """One ``run()``; datatrove's Ray executor raises KeyError after killing a timed-out rank, which a rerun fixes."""
    try:
        with _progress(ex, stage):
            ex.run()
    except (KeyError, RuntimeError) as e:  # ray errors subclass RuntimeError
        return f"{type(e).__name__}: {e}"
    return None


def _run_slurm(pipeline, cfg, tasks, workers, logging_dir, skip_completed, stage) -> dict[str, Any]:

    from datatrove.executor import SlurmPipelineExecutor  # heavy: deferred until used

    if not cfg.slurm_partition:
        raise ExecutorError(f"{stage}: executor: slurm needs slurm_partition: (the sbatch partition to submit to)")
    venv = cfg.slurm_venv or os.path.dirname(os.path.dirname(sys.executable))
    log.info(kv(stage=stage, executor="slurm", partition=cfg.slurm_partition, tasks=tasks, workers=workers,
                logs=logging_dir))  # fmt: skip
    SlurmPipelineExecutor(pipeline=list(pipeline), tasks=tasks, workers=workers if workers < tasks else -1,
                          time=cfg.slurm_time, partition=cfg.slurm_partition, cpus_per_task=cfg.cpus_per_task,
                          mem_per_cpu_gb=max(1, round(cfg.mem_per_cpu_gb)), venv_path=f"{venv}/bin/activate",
                          sbatch_args=dict(cfg.slurm_sbatch_args) or None, logging_dir=logging_dir,
                          skip_completed=skip_completed, job_name=f"tokenwise-{stage}").run()  # fmt: skip
    return {"executor": "slurm", "address": cfg.slurm_partition, "workers": workers, "attempts": 1}


def _clear_completions(logging_dir: str) -> None:
    from datatrove.io import get_datafolder  # heavy: deferred until used

    folder = get_datafolder(logging_dir)
    for name in folder.list_files("completions"):
        folder.rm(name)


# ---------------------------------------------------------------- ray connection


def runtime_env() -> dict[str, Any]:
    """``runtime_env`` carrying the driver's variables the workers need (Ray workers do not inherit them)."""
    env = {k: v for k, v in os.environ.items() if k in FORWARD_ENV or k.startswith(FORWARD_PREFIXES)}
    return {"env_vars": env} if env else {}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Use the Ray instance already initialised, connect to ``address``/``RAY_ADDRESS``, or start a local one.

    Only an instance this call started is shut down on exit.
    """
    try:
        import ray  # heavy: deferred until used
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise ExecutorError("executor: ray needs the ray package: pip install 'ray[default]'") from e
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            os.environ.setdefault("RAY_AUTH_MODE", "token")  # ray 2.60 clients of `ray start --head` clusters
            ray.init(address=address, runtime_env=runtime_env() or None, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env() or None,
                     log_to_driver=False)  # fmt: skip
        started = True
    try:
        yield cluster_info()
    finally:
        if started:
            ray.shutdown()


def cluster_info() -> dict[str, Any]:
    """Address, node count and CPUs of the connected Ray cluster."""
    import ray  # heavy: deferred until used

    ctx = ray.get_runtime_context()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    address = getattr(ctx, "gcs_address", None) or "in-process"
    return {"address": address, "nodes": len(nodes), "cpus": int(ray.cluster_resources().get("CPU", 0))}


# ---------------------------------------------------------------- progress


@contextlib.contextmanager
def _progress(ex: Any, stage: str, every: float = 5.0) -> Iterator[None]:
    """Log ranks finished (from datatrove's completion markers) every ``every`` seconds while ``ex`` runs."""
    stop = threading.Event()
    thread = threading.Thread(target=_watch, args=(ex, stage, every, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        _report(ex, stage, final=True)


def _watch(ex: Any, stage: str, every: float, stop: threading.Event) -> None:
    last = -1
    while not stop.wait(every):
        last = _report(ex, stage, last=last)


def _report(ex: Any, stage: str, last: int = -1, final: bool = False) -> int:
    try:
        done = sorted(int(n.rsplit("/", 1)[-1]) for n in ex.logging_dir.list_files("completions"))
    except (OSError, ValueError):
        return last
    if len(done) != last or final:
        log.info(kv(stage=stage, progress=f"{len(done)}/{ex.world_size}", ranks_done=_ranges(done)))
    return len(done)


def _ranges(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` so progress lines stay short for many ranks."""
    out: list[str] = []
    for r in ranks:
        if out and r == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{r}"
        else:
            out.append(str(r))
    return ",".join(out) or "-"


def map_shards(fn: Callable[..., Any], items: Sequence[Any], cfg: ExecutorFields, workers: int) -> list[Any]:
    """``[fn(x) for x in items]`` as Ray tasks (executor: ray) or a local process pool; results in input order."""
    workers = max(1, min(workers, len(items) or 1))
    if cfg.executor == "ray":
        with ray_session(cfg.address, num_cpus=workers) as info:
            import ray  # heavy: deferred until used

            log.info(kv(executor="ray", address=info["address"], items=len(items), cluster_cpus=info["cpus"]))
            remote = ray.remote(num_cpus=cfg.cpus_per_task, max_retries=cfg.retries)(fn)
            return ray.get([remote.remote(x) for x in items], timeout=cfg.time_limit * max(1, len(items)))
    log.info(kv(executor="local", items=len(items), workers=workers))
    if workers == 1:
        return [fn(x) for x in items]

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
