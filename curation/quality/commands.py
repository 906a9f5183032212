"""``tokenwise quality ...``: the fastText quality classifier (train from a positive and a negative set)."""

from __future__ import annotations

from pathlib import Path

import typer

from curation.quality.classifier import train_from_config

app = typer.Typer(
    help="Quality classifier: train it from positive/negative sets; curate score stores its score.",
    no_args_is_help=True,
)


@app.command("train")
def train_cmd(
    config: Path = typer.Option(Path("configs/demo.yaml"), "--config", help="YAML config with a quality: section."),
    run: str = typer.Option("runs/demo", "--run", help="Run directory; writes <run>/models/quality/."),
) -> None:
    """Train the classifier, report held-out precision/recall, save model.bin + metrics.json."""
    try:
        summary = train_from_config(str(config), run)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)
