"""``tokenwise corpus``: build the corpus of a run directory from the ``corpus:`` section of a config."""

from __future__ import annotations

from pathlib import Path

import typer

from curation.ingest.build import STAGE, CorpusConfig, CorpusError, summary
from curation.ingest.build import build as build_corpus
from tokenwise.config import load_section

app = typer.Typer(help="Read sources (JSONL, Parquet, text dirs, datasets, .mo catalogs, stdlib) into corpus shards.",
                  no_args_is_help=True)  # fmt: skip


@app.command("build")
def build(
    config: Path = typer.Option(..., help="YAML config with a `corpus:` section."),
    run: str = typer.Option(..., help="Run directory (local path or fsspec URL); writes <run>/corpus/."),
    force: bool = typer.Option(False, help="Rebuild even when the stage marker says the corpus is up to date."),
) -> None:
    """Write <run>/corpus/shard-*.parquet, manifest.json and quarantine/*.jsonl; reruns resume unfinished ranks."""
    cfg = load_section(config, STAGE, CorpusConfig)
    try:
        manifest = build_corpus(cfg, run, force=force)
    except CorpusError as e:
        typer.echo(f"corpus build failed: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {run.rstrip('/')}/corpus/ (manifest.json, {len(manifest['shards'])} shards, quarantine/)")
    typer.echo(summary(manifest))
