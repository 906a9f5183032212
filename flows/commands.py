"""`tokenwise prefect ...`: run the flows from a local Prefect server and its UI."""

from __future__ import annotations

from pathlib import Path

import typer

from tokenwise.orchestration import load_prefect_config

app = typer.Typer(help="Prefect orchestration: a local server and UI serving every stage flow.", no_args_is_help=True)


@app.command("up")
def up(
    config: Path = typer.Option(
        Path("configs/demo.yaml"), help="Config whose `prefect:` section sets host/port/home."
    ),
    run: str = typer.Option("runs/demo", help="Run directory the deployments' forms start with."),
    host: str | None = typer.Option(None, help="Server interface (default: prefect.host from config)."),
    port: int | None = typer.Option(None, help="Server port (default: prefect.port from config)."),
    home: str | None = typer.Option(None, help="PREFECT_HOME with the SQLite database (default: prefect.home)."),
) -> None:
    """Start a local Prefect server, wait for health, serve every deployment and print the UI URL; Ctrl-C stops."""
    from flows.server import up as server_up  # Prefect is an optional extra: imported only when this runs

    cfg = load_prefect_config(str(config))
    config_path = str(config.resolve())
    run_dir = run if "://" in run else str(Path(run).resolve())
    server_up(config_path, run_dir, host or cfg.host, port or cfg.port, home or cfg.home, cfg.health_timeout_s)


@app.command("deploy")
def deploy(
    config: Path = typer.Option(Path("configs/demo.yaml"), help="Config whose `prefect:` section names the pools."),
    run: str = typer.Option("runs/demo", help="Run directory the deployments' forms start with."),
    worker_type: str = typer.Option("process", help="Work pool type: process, docker or kubernetes."),
) -> None:
    """Create the CPU and GPU work pools and deploy every flow to them on the server at PREFECT_API_URL."""
    from flows.deployments import deploy_to_pools  # Prefect is an optional extra: imported only here

    run_dir = run if "://" in run else str(Path(run).resolve())
    ids = deploy_to_pools(str(config.resolve()), run_dir, worker_type)
    typer.echo(f"created {len(ids)} deployments; start workers with `prefect worker start --pool <pool>`")
