"""``tokenwise measure`` and ``tokenwise ledger export``."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.measure.export import export
from serving.measure.ledger import read_ledger
from serving.measure.project import load_workload, project
from tokenwise.rundir import atomic_open, read_json, safe_join, write_json

app = typer.Typer(help="Replay held-out requests through baseline and optimized stacks; write the ledger.",
                  invoke_without_command=True)  # fmt: skip
ledger_app = typer.Typer(help="Export the measurement ledger to observability tools.", no_args_is_help=True)


@app.callback()
def measure(
    ctx: typer.Context,
    config: Path = typer.Option(Path("configs/demo.yaml"), help="YAML with serve: and measure: sections."),
    run: str = typer.Option("runs/demo", help="Run directory (models, held-out documents; writes measure/)."),
) -> None:
    """Measure every stack in `measure.stacks` on the same held-out requests; print the savings table."""
    if ctx.invoked_subcommand:
        return

    from serving.measure.run import run_measure, summary_markdown  # heavy (torch): imported when the command runs

    s = run_measure(str(config), run)
    typer.echo(summary_markdown(s))
    typer.echo(f"wrote {s['ledger']['parquet']} and {Path(run) / 'measure' / 'summary.json'}")


@app.command("project")
def project_cmd(
    workload: Path = typer.Option(..., help="Workload profile YAML (traffic by language and domain)."),
    run: str = typer.Option("runs/demo", help="Run directory with measure/ledger.parquet."),
    boot: int = typer.Option(200, help="Bootstrap resamples for the intervals."),
) -> None:
    """Project monthly tokens, cost, GPU-hours and savings per stack from the measured per-byte rates."""
    w = load_workload(str(workload))
    rows = read_ledger(str(Path(run) / "measure" / "ledger.parquet"))
    summary = read_json(str(Path(run) / "measure" / "summary.json"))
    res = project(rows, w, list(summary["stacks"]), summary["baseline"], boot=boot)
    out = safe_join(run, "measure", f"projection-{w.name}.json")
    write_json(out, res)
    for name, s in res["stacks"].items():
        sav = s.get("savings_vs_baseline", {}).get("cost")
        extra = f", saves ${sav['value']:,.2f}/month [{sav['ci95'][0]:,.2f}, {sav['ci95'][1]:,.2f}]" if sav else ""
        typer.echo(f"{name}: {s['tokens']['value']:,.0f} tokens, ${s['cost']['value']:,.2f}, "
                   f"{s['gpu_hours']['value']:,.1f} GPU-h per month{extra}")  # fmt: skip
    for n in res["notes"]:
        typer.echo(f"note: {n}")
    typer.echo(f"wrote {out}")


@ledger_app.command("export")
def export_cmd(
    run: str = typer.Option("runs/demo", help="Run directory with measure/ledger.parquet."),
    to: str = typer.Option(..., help="litellm | langfuse | otel"),
    out: Path | None = typer.Option(None, help="Output file (default: RUN/measure/ledger.<to>.json[l])."),
) -> None:
    """Write the ledger in LiteLLM spend-log, Langfuse ingestion or OTLP/JSON span shape."""
    if to not in ("litellm", "langfuse", "otel"):
        raise typer.BadParameter(f"--to must be litellm, langfuse or otel, got {to!r}")
    rows = read_ledger(str(Path(run) / "measure" / "ledger.parquet"))
    target = out or Path(run) / "measure" / f"ledger.{to}.{'json' if to == 'otel' else 'jsonl'}"
    with atomic_open(target, "w", encoding="utf-8") as f:
        f.write(export(rows, to))  # type: ignore[arg-type]
    typer.echo(f"wrote {len(rows)} rows to {target}")
