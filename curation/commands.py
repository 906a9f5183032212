"""``tokenwise curate ...``: score documents once, then dedup, decide, what-if, plan and count tokens from them."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from curation.decide import decisions
from curation.decide.decisions import DecideConfig, run_decide, run_whatif
from curation.executors import placement
from curation.plans import sampling, token_counts
from curation.plans.token_counts import TokenCountConfig, count_stage
from curation.signals import dedup
from curation.signals.score import score_from_config
from tokenwise.config import load_section
from tokenwise.rundir import RunDir

app = typer.Typer(help="Curation: signals, duplicates, decisions, what-if, token counts, plans.", no_args_is_help=True)

CONFIG = typer.Option(Path("configs/demo.yaml"), "--config", help="YAML config (dedup:, decide:, tokens:, plan:).")
RUN = typer.Option("runs/demo", "--run", help="Run directory (writes curated/, tokens/, plans/).")


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command("score")
def score_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """Every signal of every corpus document (LID, rule values, quality, tokens) into <run>/signals/shard-*.parquet."""
    try:
        summary = score_from_config(str(config), run)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(summary)


@app.command("dedup")
def dedup_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """Exact + MinHash near-duplicates of the corpus into <run>/signals/dedup/ (cluster id, size, representative)."""
    try:
        summary = dedup.run_stage(str(config), run)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"{Path(run) / 'signals' / 'dedup'}: {summary}")


@app.command("decide")
def decide_cmd(config: Path = CONFIG, run: str = RUN, force: bool = typer.Option(False, help="Ignore the marker.")):
    """Apply the decide: rules to stored signals; writes curated/ shards, decisions.parquet, stats.json."""
    try:
        s = run_decide(run, load_section(config, "decide", DecideConfig), force=force)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"{Path(run) / 'curated'}: {decisions.fmt_counts(s)}")


@app.command("whatif")
def whatif_cmd(
    config: Path = CONFIG,
    run: str = RUN,
    set_: list[str] = typer.Option([], "--set", help="rule=value (none disables), allowed_langs=de,fr, dedup=false."),
    name: str = typer.Option(None, help="Output folder name under curated/whatif/ (default: hash of the changes)."),
) -> None:
    """Recompute decisions with changed thresholds from stored signals (no models re-run), beside the baseline."""


    cfg = load_section(config, "decide", DecideConfig)
    t0 = time.perf_counter()
    try:
        s = run_whatif(run, cfg, set_, name)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"{s['out']}: {decisions.fmt_counts(s)} ({time.perf_counter() - t0:.1f}s)")
    if s.get("vs_baseline"):
        v = s["vs_baseline"]
        typer.echo(f"  vs decide: {v['docs_changed']} docs change outcome, kept {v['kept_delta']:+d} docs, "
                   f"{v['tokens_kept_delta']:+d} tokens")  # fmt: skip
    for rule, cost in s["token_cost"].items():
        typer.echo(f"  {rule}: {s['by_reason'].get(rule, 0)} docs, {cost} {s['reference_tokenizer']} tokens removed")


@app.command("tokens")
def tokens_cmd(
    config: Path = CONFIG,
    run: str = RUN,
    force: bool = typer.Option(False, help="Ignore the stage marker (shards whose counts file matches still skip)."),
) -> None:
    """Token counts of the tokens: section's shards per tokenizer and language, on its executor (local/ray/slurm)."""
    cfg = load_section(config, "tokens", TokenCountConfig)
    where = " ".join(f"{k}={v}" for k, v in placement(cfg).items())
    typer.echo(f"counting {cfg.source} of {run} under {', '.join(cfg.tokenizers)} ({where})")
    try:
        counts = count_stage(cfg, run, force=force)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    out = RunDir(run).path("tokens", Path(cfg.source).name, "counts.json")
    typer.echo(f"{out}: {token_counts.fmt_counts(counts)}")


@app.command("plan")
def plan_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """Sampling plans for the token budget (proportional, temperature, UniMax) + tpsu/balance/economics JSON."""
    try:
        summary = sampling.run_stage(str(config), run)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
    typer.echo(f"{Path(run) / 'plans'}: {summary}")
