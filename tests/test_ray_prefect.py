"""Prefect flows on Ray: per-shard tasks through prefect-ray against a real (temporary) Prefect server.

The server is prefect_test_harness's subprocess; the Ray instance is started here with the server's URL in its
``runtime_env`` (workers do not inherit the driver's environment) and shut down at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from curation.token_counts import TokenCountConfig, count_tokens
from flows.ray_runner import TaskRunnerConfig, TaskRunnerError, build_task_runner, token_counts_flow, with_task_runner

sys.path.insert(0, str(Path(__file__).parent))
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus  # noqa: E402

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def server_and_ray():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    if ray.is_initialized():
        pytest.skip("a Ray instance is already initialised in this process")
    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PREFECT_API_URL": url}})  # fmt: skip
        try:
            yield url
        finally:
            ray.shutdown()


def test_ray_runner_refuses_ephemeral_mode(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(TaskRunnerError, match="real Prefect server.*PREFECT_API_URL"):
            build_task_runner(TaskRunnerConfig(kind="ray"))


def test_per_shard_tasks_on_ray_equal_thread_pool_and_executor(server_and_ray, tmp_path):
    run = tmp_path / "run"
    write_corpus(run, parallel_docs(limit=12) + stdlib_docs(), shard_size=30)
    reference = count_tokens(TokenCountConfig(source="corpus", workers=1, tasks=1), str(run))
    results = {}
    for kind in ("thread", "ray"):
        shutil.rmtree(run / "tokens")
        flow = with_task_runner(token_counts_flow, TaskRunnerConfig(kind=kind, max_workers=2))
        results[kind] = flow(str(run), {"source": "corpus"})
    where = {k: r.pop("where") for k, r in results.items()}
    reference.pop("where")
    assert results["thread"] == results["ray"] == reference
    assert where["thread"]["pids"] == [os.getpid()]
    assert os.getpid() not in where["ray"]["pids"] and where["ray"]["shards"] == reference["shards"] > 1
    assert _completed_shard_task_runs() == 2 * reference["shards"]  # the Ray workers reported to this server


def _completed_shard_task_runs() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterState

    flt = TaskRunFilter(name=TaskRunFilterName(like_="count-"), state=TaskRunFilterState(type={"any_": ["COMPLETED"]}))
    with get_client(sync_client=True) as client:
        return len(client.read_task_runs(task_run_filter=flt))
