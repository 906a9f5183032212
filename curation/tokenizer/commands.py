"""``tokenwise tokenizer train|extend|eval``: train, extend and measure a run's tokenizers (config ``tokenizer:``)."""

from __future__ import annotations

from pathlib import Path

import typer

from curation.tokenizer.config import (
    TokenizerEvalError,
    TokenizerExtendError,
    TokenizerTrainError,
    load_tokenizer_section,
    parse_gate,
)
from curation.tokenizer.evaluate import check_gates, evaluate, parallel_name
from curation.tokenizer.extend import extend
from curation.tokenizer.train import describe, train_all
from tokenwise.tokenizer_specs import TokenizerSpecError

app = typer.Typer(help="Train, extend and evaluate tokenizers on the run's curated data.", no_args_is_help=True)

CONFIG = typer.Option(Path("configs/demo.yaml"), "--config", help="YAML config with a tokenizer: section.")
RUN = typer.Option("runs/demo", "--run", help="Run directory (reads curated/ and plans/, writes tokenizers/).")


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _by_domain(s: dict, ref: str) -> str:
    """Savings per domain and English's cost per domain: a domain tokenizer's off-domain cost shows beside its gain."""
    def per_domain(prefix: str) -> dict[str, float]:
        return {k.removeprefix(prefix): v for k, v in s.items() if k.startswith(prefix)}

    saved, en = per_domain(f"tokens_saved_vs_{ref}_"), per_domain(f"english_cost_vs_{ref}_")
    parts = ", ".join(f"{d} {v:+.1%}" for d, v in saved.items())
    cost = ", ".join(f"{d} {v:.2f}x" for d, v in en.items())
    return f"saved vs {ref} by domain: {parts}; English tokens vs {ref} by domain: {cost}"


@app.command("train")
def train_cmd(
    config: Path = CONFIG,
    run: str = RUN,
    name: list[str] = typer.Option([], "--name", help="Train only these configured tokenizers (repeatable)."),
) -> None:
    """Train every tokenizer listed under tokenizer.train (streaming from <run>/curated/, sampled by its plan)."""
    section = load_tokenizer_section(str(config))
    section.extend = []
    try:
        done = train_all(section, run, only=name or None)
    except (TokenizerTrainError, TokenizerSpecError) as e:
        _fail(e)
    for d in done:
        how = "up to date" if d.get("skipped") else f"trained in {d.get('train_seconds')}s"
        typer.echo(f"{Path(run) / 'tokenizers' / d['name']}: {describe(d)} ({how})")


@app.command("extend")
def extend_cmd(
    config: Path = CONFIG,
    run: str = RUN,
    name: list[str] = typer.Option([], "--name", help="Make only these configured extensions (repeatable)."),
) -> None:
    """Add domain tokens to a base tokenizer (tokenizer.extend), keeping every existing id; prints savings."""
    section = load_tokenizer_section(str(config))
    for cfg in section.extend:
        if name and cfg.name not in name:
            continue
        try:
            meta = extend(cfg, run, section.source)
        except (TokenizerExtendError, TokenizerSpecError) as e:
            _fail(e)
        held = (meta["heldout"] or {}).get("saved", float("nan"))
        out = Path(run) / "tokenizers" / cfg.name
        typer.echo(
            f"{out}: +{len(meta['added'])} tokens on {cfg.base}; saves {meta['sample']['saved']:.1%} on the "
            f"sample, {held:.1%} held out"
        )
        for a in meta["added"][:10]:
            typer.echo(f"  id {a['id']:>6} {a['token']!r:<28} saves {a['tokens_saved']} tokens")


@app.command("eval")
def eval_cmd(
    config: Path = CONFIG,
    run: str = RUN,
    fail_if: list[str] = typer.Option(
        [], "--fail-if", help="Gate, e.g. 'premium_max>2.0' (repeatable; adds to config)."
    ),
    parallel: Path | None = typer.Option(
        None,
        "--parallel",
        help="Score every unit of this parallel JSONL (one column per language, or unit_id + lang + text rows) "
        "instead of the held-out split; writes tokenizers/eval_<stem>.json.",
    ),
) -> None:
    """Evaluate candidates and references on the held-out split (or --parallel FILE); exit 1 naming the metric when
    a gate fails."""
    section = load_tokenizer_section(str(config))
    gates = [*section.eval.fail_if, *fail_if]
    try:
        for g in gates:
            parse_gate(g)
        report = evaluate(section.eval, run, section.source, str(parallel) if parallel else None)
        failures = check_gates(report, gates)
    except (TokenizerEvalError, TokenizerSpecError, ValueError) as e:
        _fail(e)
    ref = report["reference"]
    if report["parallel"]:
        p = report["parallel"]
        typer.echo(
            f"{p['path']}: {p['units']} units, {p['documents']} texts in {len(p['languages'])} languages scored, "
            f"{p['quarantined']} rows quarantined"
        )
    for n, r in report["results"].items():
        s = r["summary"]
        prem = "-"
        if s["premium_max"] is not None:
            lo, hi = s["premium_max_ci95"]
            worst = f"{s['premium_worst_language']}, {s['premium_worst_units']} units"
            prem = f"{s['premium_max']:.2f} [{lo:.2f}, {hi:.2f}] ({worst})"
        saved = s.get(f"tokens_saved_vs_{ref}")
        typer.echo(
            f"{n:>16}: premium_max {prem}, gini {s['fairness_gini'] or 0:.3f}, "
            f"saved vs {ref} {'-' if saved is None else f'{saved:+.1%}'}, roundtrip failures "
            f"{s['roundtrip_failures']}, {s['throughput_batch_mb_s']} MB/s batch"
        )
        if n != ref and r.get("role") == "candidate":
            typer.echo(f"{'':>18}{_by_domain(s, ref)}")
    few = {k: n for r in report["results"].values() for k, n in r["summary"]["premium_few_units"].items()}
    if few:
        typer.echo(f"warning: few parallel units (wide intervals, still in premium_max): {few}", err=True)
    for n, r in report["results"].items():
        if r["summary"]["premium_unmeasured"]:
            typer.echo(f"warning: {n}: no premium for {r['summary']['premium_unmeasured']}", err=True)
    name = parallel_name(str(parallel)) if parallel else "eval"
    prefix = f"{name}_" if parallel else ""
    typer.echo(
        f"wrote {Path(run) / 'tokenizers' / (name + '.json')} and {prefix}premium_vs_eng_Latn.csv, {prefix}savings.csv"
    )
    for f in failures:
        typer.echo(f"GATE FAILED: {f}", err=True)
    if failures:
        raise typer.Exit(1)
