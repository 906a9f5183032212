"""The ``tokenwise`` command line, built from the stage registry.

Every stage group is a sub-command group (``tokenwise curate ...``) whose hand-written commands live beside their code
(``curation/commands.py`` ...); every stage without a hand-written command gets a generic one that validates the
config and calls the stage: ``tokenwise <group> <command> --config FILE.yaml --run DIR`` prints the stage's one-line
summary. Logging is configured here, once, in :func:`main`.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import typer

from flows.commands import app as prefect_app
from serving.measure.commands import ledger_app
from tokenwise.config import ConfigError
from tokenwise.log import configure
from tokenwise.pipeline import run_demo
from tokenwise.registry import Registry, Stage
from tokenwise.stages import REGISTRY

CONFIG = typer.Option(Path("configs/demo.yaml"), "--config", help="YAML config (one section per stage).")
RUN = typer.Option("runs/demo", "--run", help="Run directory (local path or fsspec URL).")


def build_app(registry: Registry = REGISTRY) -> typer.Typer:
    """The typer app: one group per registry group, generic commands for stages without a hand-written one."""
    app = typer.Typer(
        name="tokenwise",
        help="Measure and optimise the token cost of a model, from corpus to serving. "
        "Every command takes --config FILE.yaml and --run DIR.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = {"registry": registry}

    app.add_typer(_config_app(registry), name="config")
    app.command("demo")(_demo_command(registry))
    for group in registry.groups:
        stages = [s for s in registry.stages_of(group.name) if s.command]
        if callable(group.app) and not isinstance(group.app, typer.Typer):  # a single top-level command
            app.command(group.name, help=group.help)(group.app)
            continue
        sub = copy.copy(group.app) if group.app else typer.Typer(help=group.help, no_args_is_help=True)
        sub.registered_commands = list(sub.registered_commands)  # generic commands go on this app's copy only
        have = _command_names(sub)
        for stage in stages:
            words = stage.command.split()
            if len(words) == 1 and not have and group.app is None:
                app.command(group.name, help=_stage_help(stage))(_generic_command(stage, registry))
                sub = None
            elif len(words) > 1 and words[1] not in have:
                sub.command(words[1], help=_stage_help(stage))(_generic_command(stage, registry))
        if sub is not None:
            app.add_typer(sub, name=group.name, help=group.help)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(prefect_app, name="prefect")
    return app


def _command_names(sub: typer.Typer) -> set[str]:
    return {c.name or c.callback.__name__.replace("_", "-") for c in sub.registered_commands}


def _stage_help(stage: Stage) -> str:
    doc = (stage.run.__doc__ or "").strip().splitlines()
    return doc[0] if doc else f"Run the {stage.name} stage."


def _generic_command(stage: Stage, registry: Registry) -> Any:
    def command(config: Path = CONFIG, run: str = RUN) -> None:
        registry.validate_file(config)
        typer.echo(stage.run(str(config), run))

    command.__name__ = f"{stage.name}_cmd"
    return command


def _config_app(registry: Registry) -> typer.Typer:
    config_app = typer.Typer(help="Check config files before any work starts.", no_args_is_help=True)

    @config_app.command("validate")
    def config_validate(files: list[Path] = typer.Argument(..., help="YAML config files to validate.")) -> None:
        """Validate every section of each config file; exit 1 naming file:line, key and expected value on error."""
        bad = 0
        for f in files:
            try:
                sections = registry.validate_file(f)
            except ConfigError as e:
                typer.echo(str(e), err=True)
                bad += 1
                continue
            typer.echo(f"{f}: ok ({', '.join(sections) or 'no sections'})")
        raise typer.Exit(1 if bad else 0)

    return config_app


def _demo_command(registry: Registry) -> Any:
    def demo(
        config: Path = typer.Option(Path("configs/demo.yaml"), help="Demo config (one section per stage)."),
        run: str = typer.Option("runs/demo", help="Run directory (local path or fsspec URL)."),
        only: list[str] = typer.Option([], help="Run only these stages (repeatable)."),
    ) -> None:
        """Run every stage end to end at small scale and print where the outputs and report are."""
        run_demo(registry, config, run, only=only or None)

    return demo


app = build_app()


def main() -> None:
    """Entry point of the ``tokenwise`` console script; config errors exit 2 with the message only."""
    configure()
    try:
        app()
    except ConfigError as e:
        typer.echo(f"config error:\n{e}", err=True)
        sys.exit(2)
