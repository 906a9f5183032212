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
from pathlib import Path
from typing import Any

from prefect.types.entrypoint import EntrypointType

from flows.params import EndToEndParams, PrefectConfig, StageParams, load_prefect_config
from flows.registry import GPU_GROUPS

# deployment name -> (module-path entrypoint "package.module:function", stage group it runs: decides the CPU or GPU
# pool). Module paths, never file paths: Prefect imports a file entrypoint under its bare file name, so a flow file
# named like a package (flows/finetune.py) would shadow that package in the flow-run process.
FLOW_ENTRYPOINTS: dict[str, tuple[str, str]] = {
    "corpus": ("flows.corpus_flow:corpus_flow", "corpus"),
    "corpus-refresh": ("flows.corpus_flow:corpus_refresh_flow", "corpus"),
    "quality": ("flows.quality_flow:quality_flow", "quality"),
    "curate": ("flows.curate_flow:curate_flow", "curate"),
    "tokenizer": ("flows.tokenizer_flow:tokenizer_flow", "tokenizer"),
    "finetune": ("flows.finetune_flow:finetune_flow", "finetune"),
    "quantize": ("flows.quantize_flow:quantize_flow", "quantize"),
    "serve": ("flows.serve_flow:serve_flow", "serve"),
    "measure": ("flows.measure_flow:measure_flow", "measure"),
    "report": ("flows.report_flow:report_flow", "report"),
    "end-to-end": ("flows.end_to_end_flow:end_to_end_flow", "finetune"),  # trains models: needs the GPU pool
}

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


def load_flow(name: str) -> Any:
    """Import a flow object from its entrypoint."""
    import importlib

    module, _, fn = FLOW_ENTRYPOINTS[name][0].partition(":")
    return getattr(importlib.import_module(module), fn)


def default_parameters(name: str, config_path: str, run_dir: str) -> dict[str, Any]:
    """The parameters a deployment's Run form starts with."""
    model = EndToEndParams if name == "end-to-end" else StageParams
    return {"params": model(config_path=config_path, run_dir=run_dir).model_dump(mode="json")}


def build_deployments(config_path: str, run_dir: str) -> list[Any]:
    """One RunnerDeployment per flow for ``serve``; the corpus refresh carries the cron schedule from config."""
    cfg = prefect_config(config_path)
    deployments = []
    for name, (_, group) in FLOW_ENTRYPOINTS.items():
        kwargs: dict[str, Any] = {}
        if name == "corpus-refresh":
            from prefect.schedules import Cron

            kwargs["schedule"] = Cron(cfg.refresh_cron, timezone=cfg.refresh_timezone)
        deployments.append(
            load_flow(name).to_deployment(
                name=name,
                entrypoint_type=EntrypointType.MODULE_PATH,
                parameters=default_parameters(name, config_path, run_dir),
                tags=["tokenwise", "gpu" if group in GPU_GROUPS else "cpu"],
                description=load_flow(name).description,
                **kwargs,
            )
        )
    return deployments


def serve_all(config_path: str, run_dir: str, limit: int | None = None) -> None:
    """Register every deployment and run triggered flow runs here until interrupted (blocks)."""
    from prefect import serve

    serve(*build_deployments(config_path, run_dir), limit=limit, print_starting_message=True)


def pool_for(name: str, cfg: PrefectConfig) -> str:
    """The work pool a flow's deployment targets: the GPU pool for GPU stages, the CPU pool otherwise."""
    return cfg.gpu_pool if FLOW_ENTRYPOINTS[name][1] in GPU_GROUPS else cfg.cpu_pool


def deploy_to_pools(config_path: str, run_dir: str, worker_type: str = "process") -> list:
    """Create the CPU and GPU work pools (if missing) and one deployment per flow targeting them; returns their ids.

    Entrypoints are module paths, so a worker needs the project installed (``pip install -e .`` or the image), not a
    checkout in its working directory.
    """
    from prefect.schedules import Cron

    cfg = prefect_config(config_path)
    ensure_work_pools(cfg, worker_type)
    ids = []
    for name, (_, group) in FLOW_ENTRYPOINTS.items():
        gpu = group in GPU_GROUPS
        ids.append(
            load_flow(name).deploy(
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
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for pool in (cfg.cpu_pool, cfg.gpu_pool):
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type=worker_type))
            except ObjectAlreadyExists:
                pass


def create_failure_automation(webhook_url: str, name: str = "tokenwise-failed-or-crashed") -> str:
    """An automation that posts to ``webhook_url`` whenever a tokenwise flow run ends Failed or Crashed."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

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
