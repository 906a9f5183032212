"""``tokenwise report``: write the HTML report of a run, optionally diffed against a previous one."""

from __future__ import annotations

from pathlib import Path

import typer

from report.build import ReportConfig, build_report
from tokenwise.config import load_section


def report_cmd(
    ctx: typer.Context,
    run: str = typer.Option(..., help="Run directory to report on."),
    previous: str | None = typer.Option(None, help="A previous run directory: the report shows what changed."),
    config: Path | None = typer.Option(None, help="Config with a `report:` section (previous, seed)."),
) -> None:
    """Write the self-contained HTML report (+ report.json, CSVs, summary.md) under RUN/report/."""
    cfg = load_section(config, "report", ReportConfig) if config else ReportConfig()
    registry = (ctx.obj or {}).get("registry")
    commands = registry.writer_commands() if registry is not None else None
    res = build_report(run, previous=previous or cfg.previous, seed=cfg.seed, commands=commands)
    typer.echo(f"wrote {res['html']} ({res['available']}/{res['sections']} sections available)")
