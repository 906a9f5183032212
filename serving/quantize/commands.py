"""``tokenwise quantize``: compare torchao quantizations of the run's models with the unquantized ones."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tokenwise.rundir import write_json

app = typer.Typer(help="Quantize models (torchao int8/int4) and report size, speed and perplexity vs unquantized.")


@app.callback(invoke_without_command=True)
def quantize(
    ctx: typer.Context,
    config: Path = typer.Option(Path("configs/demo.yaml"), help="Config with a `quantize:` section."),
    run: str = typer.Option("runs/demo", help="Run directory holding models/<name>/."),
) -> None:
    """Report each configured model's quantizations; writes <run>/models/<name>/quantized/report.json."""
    if ctx.invoked_subcommand is not None:
        return

    from serving.quantize.stage import run_quantize_stage  # heavy (torch): imported when the command runs

    typer.echo(run_quantize_stage(str(config), run))


@app.command("model")
def quantize_model_dir(
    path: Path = typer.Argument(..., help="HF model directory."),
    text: Path = typer.Option(..., help="UTF-8 text file scored for bits per byte / perplexity (held-out)."),
    method: list[str] = typer.Option(["int8_weight_only", "int8_dynamic"], help="Quantizers to compare."),
    out: Path | None = typer.Option(None, help="Write the report JSON here."),
) -> None:
    """Compare quantizers on one model directory and a held-out text file; prints the report."""


    if not text.is_file():
        raise typer.BadParameter(f"{text}: not a file")
    from serving.models import load_model, load_tokenizer  # heavy (torch): imported when the command runs
    from serving.quantize.methods import compare  # heavy (torch): imported when the command runs

    body = text.read_text(encoding="utf-8")
    tok = load_tokenizer(path)
    prompts = [tok.encode(body[:400], add_special_tokens=False)]
    rows = compare(lambda: load_model(path), tok, method, [body], prompts)
    if out:
        write_json(out, rows)
        typer.echo(f"wrote {out}")
    typer.echo(json.dumps(rows, indent=1))
