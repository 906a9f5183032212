"""The ``tokenwise`` command line: one sub-command group per stage, each calling library functions.

Every command takes ``--config`` (YAML) and ``--run`` (run directory) and prints where it wrote plus a one-line
summary.
Stage groups live beside their code (``curation/commands.py``, ``finetune/commands.py`` ...) and are listed in
:data:`GROUPS`; heavy imports happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from curation.config import ConfigError, validate_file

app = typer.Typer(
    name="tokenwise",
    help="Measure and optimise the token cost of a model, from corpus to serving. "
    "Every command takes --config FILE.yaml and --run DIR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check config files before any work starts.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# group name -> module holding a typer app named `app` (stages add themselves here)
GROUPS: dict[str, str] = {
    "quality": "curation.commands_quality",
    "finetune": "finetune.commands",
    "measure": "serving.commands_measure",
    "curate": "curation.commands_curate",
    "serve": "serving.commands_serve",
    "quantize": "serving.commands_quantize",
    "corpus": "curation.commands_corpus",
    "prefect": "flows.commands",
    "tokenizer": "curation.commands_tokenizer",
}


@config_app.command("validate")
def config_validate(files: list[Path] = typer.Argument(..., help="YAML config files to validate.")) -> None:
    """Validate every section of each config file; exit 1 naming file:line, key and expected value on error."""
    bad = 0
    for f in files:
        try:
            sections = validate_file(f)
        except ConfigError as e:
            typer.echo(str(e), err=True)
            bad += 1
            continue
        typer.echo(f"{f}: ok ({', '.join(sections) or 'no sections'})")
    raise typer.Exit(1 if bad else 0)


@app.command("demo")
def demo(
    config: Path = typer.Option(Path("configs/demo.yaml"), help="Demo config (one section per stage)."),
    run: str = typer.Option("runs/demo", help="Run directory (local path or fsspec URL)."),
    only: list[str] = typer.Option([], help="Run only these stages (repeatable)."),
) -> None:
    """Run every stage end to end at small scale and print where the outputs and report are."""
    from curation.pipeline import run_demo

    run_demo(config, run, only=only or None)


@app.command("report")
def report(
    run: str = typer.Option(..., help="Run directory to report on."),
    previous: str | None = typer.Option(None, help="A previous run directory: the report shows what changed."),
    config: Path | None = typer.Option(None, help="Config with a `report:` section (previous, seed)."),
) -> None:
    """Write the self-contained HTML report (+ report.json, CSVs, summary.md) under RUN/report/."""
    from curation.config import load_section
    from curation.report.build import build_report

    cfg = load_section(config, "report") if config else None
    res = build_report(run, previous=previous or (cfg.previous if cfg else None), seed=cfg.seed if cfg else 0)
    typer.echo(f"wrote {res['html']} ({res['available']}/{res['sections']} sections available)")


def _register_groups() -> None:
    for name, module in GROUPS.items():
        app.add_typer(importlib.import_module(module).app, name=name)
    app.add_typer(importlib.import_module("serving.commands_measure").ledger_app, name="ledger")


_register_groups()


def main() -> None:
    """Entry point of the ``tokenwise`` console script; config errors exit 2 with the message only."""
    try:
        app()
    except ConfigError as e:
        typer.echo(f"config error:\n{e}", err=True)
        sys.exit(2)
