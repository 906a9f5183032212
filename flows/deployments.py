"""Deployments of every flow: served locally by `tokenwise prefect up`, or deployed to CPU/GPU work pools.

Two ways to run them:

* ``serve`` (local, what `tokenwise prefect up` does): one process polls the server and runs each triggered flow run
  in a subprocess; no work pool or worker needed.
* ``deploy_to_pools`` (shared server / Prefect Cloud): deployments target the ``cpu_pool`` or, for GPU stages, the
  ``gpu_pool`` of the `prefect:` config section; workers of any type pick them up. :data:`GPU_JOB_VARIABLES` lists the
  job variables that request one GPU for process, Docker and Kubernetes workers.

Failed/Crashed notifications: :func:`create_failure_automation` registers an automation that posts to a webhook.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

from prefect.types.entrypoint import EntrypointType

from flows.catalog import group_flow
from flows.corpus_flow import corpus_refresh_flow
from flows.end_to_end_flow import end_to_end_flow
from flows.params import StageParams
from flows.settings import form_defaults
from tokenwise.orchestration import PrefectConfig, load_prefect_config
from tokenwise.stages import REGISTRY


def deployment_flows() -> dict[str, tuple[Any, str]]:
    """Deployment name -> (flow, stage group it runs: decides the CPU or GPU pool), read from the registry.

    One deployment per registry group, plus the scheduled ``corpus-refresh`` and the ``end-to-end`` flow (it trains
    models, so it goes to the GPU pool).
    """
    out = {g: (group_flow(g), g) for g in REGISTRY.group_names()}
    out["corpus-refresh"] = (corpus_refresh_flow, "corpus")
    out["end-to-end"] = (end_to_end_flow, "finetune")
    return out


def entrypoint(flow: Any) -> str:
    """The module-path entrypoint ``package.module:function`` of a flow.

    Module paths, never file paths: Prefect imports a file entrypoint under its bare file name, so a flow file named
    like a package (flows/finetune.py) would shadow that package in the flow-run process.
    """
    return f"{flow.fn.__module__}:{flow.fn.__name__}"


# Job variables that request one GPU, per worker type (`prefect work-pool create gpu --type <type>`).
GPU_JOB_VARIABLES: dict[str, dict[str, Any]] = {
    # process worker on a GPU host: pin the device; the host's CUDA torch is used
    "process": {"env": {"CUDA_VISIBLE_DEVICES": "0", "TOKENWISE_DEVICE": "cuda"}},
    # docker worker: an image with the CUDA torch build; the daemon needs the NVIDIA container toolkit
    "docker": {
        "image": "tokenwise:cuda",
        "env": {"TOKENWISE_DEVICE": "cuda"},
        "container_create_kwargs": {"device_requests": [{"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}]},
    },
    # kubernetes worker: the base job template exposes the container resources via a customised template variable
    # `gpu_limit` rendered into resources.limits["nvidia.com/gpu"]; the node pool needs the NVIDIA device plugin
    "kubernetes": {
        "image": "tokenwise:cuda",
        "env": {"TOKENWISE_DEVICE": "cuda"},
        "gpu_limit": 1,
        "node_selector": {"nvidia.com/gpu.present": "true"},
    },
}
CPU_JOB_VARIABLES: dict[str, Any] = {"env": {"CUDA_VISIBLE_DEVICES": "", "TOKENWISE_DEVICE": "cpu"}}


def prefect_config(config_path: str) -> PrefectConfig:
    """The `prefect:` section of a config (defaults when absent)."""
    return load_prefect_config(config_path)


def params_model(flow: Any) -> type[StageParams]:
    """The pydantic model of a flow's ``params`` parameter (its Run form)."""
    model = typing.get_type_hints(flow.fn).get("params", StageParams)
    return model if isinstance(model, type) and issubclass(model, StageParams) else StageParams


def default_parameters(name: str, config_path: str, run_dir: str) -> dict[str, Any]:
    """The parameters a deployment's Run form starts with: the config path, the run dir and each knob's value in
    that config (a knob left at it means "the config's value" when the run starts; see flows.settings)."""
    model = params_model(deployment_flows()[name][0])
    knobs = form_defaults(model, config_path)
    return {"params": model(config_path=config_path, run_dir=run_dir, **knobs).model_dump(mode="json")}


def build_deployments(config_path: str, run_dir: str) -> list[Any]:
    """One RunnerDeployment per flow for ``serve``; the corpus refresh carries the cron schedule from config."""
    cfg = prefect_config(config_path)
    deployments = []
    for name, (flow, group) in deployment_flows().items():
        kwargs: dict[str, Any] = {}
        if name == "corpus-refresh":
            from prefect.schedules import Cron  # heavy: deferred until used

            kwargs["schedule"] = Cron(cfg.refresh_cron, timezone=cfg.refresh_timezone)
        deployments.append(
            flow.to_deployment(
                name=name,
                entrypoint_type=EntrypointType.MODULE_PATH,
                parameters=default_parameters(name, config_path, run_dir),
                tags=["tokenwise", REGISTRY.group_device(group)],
                description=flow.description,
                **kwargs,
            )
        )
    return deployments


def serve_all(config_path: str, run_dir: str, limit: int | None = None) -> None:
    """Register every deployment and run triggered flow runs here until interrupted (blocks)."""
    from prefect import serve  # heavy: deferred until used

    serve(*build_deployments(config_path, run_dir), limit=limit, print_starting_message=True)


def pool_for(name: str, cfg: PrefectConfig) -> str:
    """The work pool a flow's deployment targets: the GPU pool for GPU stages, the CPU pool otherwise."""
    return cfg.gpu_pool if REGISTRY.group_device(deployment_flows()[name][1]) == "gpu" else cfg.cpu_pool


def deploy_to_pools(config_path: str, run_dir: str, worker_type: str = "process") -> list:
    """Create the CPU and GPU work pools (if missing) and one deployment per flow targeting them; returns their ids.

    Entrypoints are module paths, so a worker needs the project installed (``pip install -e .`` or the image), not a
    checkout in its working directory.
    """
    from prefect.schedules import Cron  # heavy: deferred until used

    cfg = prefect_config(config_path)
    ensure_work_pools(cfg, worker_type)
    ids = []
    for name, (flow, group) in deployment_flows().items():
        gpu = REGISTRY.group_device(group) == "gpu"
        ids.append(
            flow.deploy(
                name=name,
                entrypoint_type=EntrypointType.MODULE_PATH,
                work_pool_name=pool_for(name, cfg),
                job_variables=GPU_JOB_VARIABLES[worker_type] if gpu else CPU_JOB_VARIABLES,
                parameters=default_parameters(name, config_path, run_dir),
                tags=["tokenwise", "gpu" if gpu else "cpu"],
                schedule=Cron(cfg.refresh_cron, timezone=cfg.refresh_timezone) if name == "corpus-refresh" else None,
                build=False,
                push=False,
                print_next_steps=False,
            )
        )
    return ids


def ensure_work_pools(cfg: PrefectConfig, worker_type: str = "process") -> None:
    """Create the CPU and GPU work pools when they do not exist yet."""
    from prefect.client.orchestration import get_client  # heavy: deferred until used
    from prefect.client.schemas.actions import WorkPoolCreate  # heavy: deferred until used
    from prefect.exceptions import ObjectAlreadyExists  # heavy: deferred until used

    with get_client(sync_client=True) as client:
        for pool in (cfg.cpu_pool, cfg.gpu_pool):
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type=worker_type))
            except ObjectAlreadyExists:
                pass


def create_failure_automation(webhook_url: str, name: str = "tokenwise-failed-or-crashed") -> str:
    """An automation that posts to ``webhook_url`` whenever a tokenwise flow run ends Failed or Crashed."""
    from prefect.automations import Automation  # heavy: deferred until used
    from prefect.blocks.notifications import CustomWebhookNotificationBlock  # heavy: deferred until used
    from prefect.events.actions import SendNotification  # heavy: deferred until used
    from prefect.events.schemas.automations import EventTrigger, Posture  # heavy: deferred until used

    block = CustomWebhookNotificationBlock(
        name="tokenwise-failures", url=webhook_url, json_data={"text": "{{subject}}: {{body}}"}
    )
    block_id = block.save("tokenwise-failures", overwrite=True)
    automation = Automation(
        name=name,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.tokenwise"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="tokenwise run {{ flow_run.name }} is {{ flow_run.state.name }}",
                body="{{ flow_run.state.message }}\n{{ flow_run|ui_url }}",
            )
        ],
    ).create()
    return str(automation.id)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.deployments serve|deploy --config FILE --run DIR`` (used by `tokenwise prefect up`)."""
    ap = argparse.ArgumentParser(prog="python -m flows.deployments")
    ap.add_argument("action", choices=["serve", "deploy"])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--worker-type", default="process", choices=sorted(GPU_JOB_VARIABLES))
    a = ap.parse_args(argv)
    config = str(Path(a.config).resolve())
    run = a.run if "://" in a.run else str(Path(a.run).resolve())
    if a.action == "serve":
        serve_all(config, run)
    else:
        print(f"created {len(deploy_to_pools(config, run, a.worker_type))} deployments")


if __name__ == "__main__":
    main()
