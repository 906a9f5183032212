"""Prefect flows on Ray: per-shard tasks through prefect-ray against a real (temporary) Prefect server.

The server is prefect_test_harness's subprocess; the Ray instance is started here with the server's URL in its
``runtime_env`` (workers do not inherit the driver's environment) and shut down at the end. Task runners come from
the ``prefect: task_runner:`` section of a YAML config, as in configs/demo.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus  # noqa: E402

from curation.plans.token_counts import TokenCountConfig, count_tokens
from flows.ray_runner import TaskRunnerConfig, TaskRunnerError, build_task_runner, token_counts_flow, with_task_runner
from tokenwise.orchestration import load_prefect_config

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


def _config(tmp_path: Path, kind: str) -> Path:
    """A config whose `tokens:` section counts the corpus and whose `prefect: task_runner:` is ``kind``."""
    path = tmp_path / f"{kind}.yaml"
    path.write_text(
        "tokens:\n  source: corpus\n  tasks: 1\n  workers: 1\n"
        f"prefect:\n  result_storage: {tmp_path / 'results'}\n  task_runner:\n    kind: {kind}\n    max_workers: 2\n"
    )
    return path


def test_per_shard_tasks_on_ray_equal_thread_pool_and_executor(server_and_ray, tmp_path):
    run = tmp_path / "run"
    write_corpus(run, parallel_docs(limit=12) + stdlib_docs(), shard_size=30)
    reference = count_tokens(TokenCountConfig(source="corpus", workers=1, tasks=1), str(run))
    results = {}
    for kind in ("thread", "ray"):
        shutil.rmtree(run / "tokens")
        config = _config(tmp_path, kind)
        runner = load_prefect_config(str(config)).task_runner
        assert runner == TaskRunnerConfig(kind=kind, max_workers=2)
        results[kind] = with_task_runner(token_counts_flow, runner)(str(run), config_path=str(config))
    where = {k: r.pop("where") for k, r in results.items()}
    reference.pop("where")
    assert results["thread"] == results["ray"] == reference
    assert where["thread"]["pids"] == [os.getpid()]
    assert os.getpid() not in where["ray"]["pids"] and where["ray"]["shards"] == reference["shards"] > 1
    # the Ray workers reported to this server
    assert _completed_shard_task_runs(f"count-{run}") == 2 * reference["shards"]


def test_curate_flow_fans_token_counts_out_to_ray_from_the_yaml_task_runner(server_and_ray, tmp_path, monkeypatch):
    from flows.curate_flow import curate_flow
    from flows.params import StageParams
    from tokenwise.stages import REGISTRY

    monkeypatch.setattr(REGISTRY, "stages", [REGISTRY.stage("tokens")])
    run = tmp_path / "run"
    write_corpus(run, parallel_docs(limit=6) + stdlib_docs(), shard_size=25)
    reference = count_tokens(TokenCountConfig(source="corpus", workers=1, tasks=1), str(tmp_path / "run"))
    shutil.rmtree(run / "tokens")
    out = curate_flow(StageParams(config_path=str(_config(tmp_path, "ray")), run_dir=str(run)))
    counts = json.loads((run / "tokens" / "corpus" / "counts.json").read_text())
    where, _ = counts.pop("where"), reference.pop("where")
    assert counts == reference and where["executor"] == "prefect" and os.getpid() not in where["pids"]
    assert out["stages"][0]["summary"].startswith(f"{reference['shards']} shards, {reference['docs']:,} docs")
    assert _completed_shard_task_runs(f"count-{run}") == reference["shards"]


def _completed_shard_task_runs(name_prefix: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterState

    flt = TaskRunFilter(
        name=TaskRunFilterName(like_=name_prefix), state=TaskRunFilterState(type={"any_": ["COMPLETED"]})
    )
    with get_client(sync_client=True) as client:
        return len(client.read_task_runs(task_run_filter=flt))
