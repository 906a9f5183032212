"""``tokenwise serve``: run the OpenAI-compatible server; ``tokenwise serve calibrate``: fit router thresholds."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.api.config import ServeConfig
from tokenwise.config import load_section

app = typer.Typer(help="Serve models behind an OpenAI-compatible API, with routing.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    config: Path = typer.Option(Path("configs/demo.yaml"), help="YAML with a serve: section."),
    run: str = typer.Option("runs/demo", help="Run directory ({run} in model paths)."),
    port: int | None = typer.Option(None, help="Override serve.port."),
) -> None:
    """Start the server (uvicorn) on serve.host:serve.port until interrupted."""
    if ctx.invoked_subcommand is not None:
        return

    from serving.api.server import run_server  # heavy (torch): imported when the command runs

    cfg = load_section(config, "serve", ServeConfig)
    if not cfg.models:
        raise typer.BadParameter(f"{config}: serve.models is empty; list at least two models")
    if port is not None:
        cfg.port = port
    typer.echo(f"serving {', '.join(m.name for m in cfg.models)} on http://{cfg.host}:{cfg.port}/v1")
    run_server(cfg, run)


@app.command("calibrate")
def calibrate_cmd(
    config: Path = typer.Option(Path("configs/demo.yaml"), help="YAML with a serve: section."),
    run: str = typer.Option("runs/demo", help="Run directory (reads held-out text and models, writes serve/)."),
) -> None:
    """Fit router thresholds for the configured budget on held-out text; writes <run>/serve/router.json."""
    from serving.api.stage import calibrate_run  # heavy (torch): imported when the command runs

    path, summary = calibrate_run(str(config), run)
    typer.echo(f"wrote {path}\n{summary}")
