"""``tokenwise finetune pretrain | lora | adapt`` (+ the generic ``compact``): drafters, LoRA, tokenizer moves."""

from __future__ import annotations

from pathlib import Path

import typer

from finetune.config import AdaptConfig, LoraConfig, PretrainConfig
from tokenwise.config import load_section

app = typer.Typer(
    help="LoRA fine-tune models, trim their vocabulary, train drafters, adapt them to a new tokenizer.",
    no_args_is_help=True,
)

CONFIG = typer.Option(Path("configs/demo.yaml"), "--config", help="YAML config with the stage's section.")
RUN = typer.Option("runs/demo", "--run", help="Run directory.")


@app.command("pretrain")
def pretrain_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """Train the models of the `pretrain` section from scratch (the demo: the drafter) into <run>/models/."""
    from finetune import pretrain  # heavy (torch): imported when the command runs

    results = pretrain.run_pretrain(load_section(config, "pretrain", PretrainConfig), run)
    typer.echo(f"wrote {', '.join(f'{run}/models/{n}' for n in results)}")
    typer.echo(pretrain.summarize(results))


@app.command("lora")
def lora_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """LoRA fine-tune the `lora` section's base; adapter, metrics.json (and merged model) in <run>/models/<output>/."""
    from finetune import lora  # heavy (torch): imported when the command runs

    m = lora.run_lora(load_section(config, "lora", LoraConfig), run)
    typer.echo(f"wrote {m['out']}")
    typer.echo(lora.summarize(m))


@app.command("adapt")
def adapt_cmd(config: Path = CONFIG, run: str = RUN) -> None:
    """Move the `adapt` section's base onto a new tokenizer (mean-of-pieces init, new rows + LoRA trained)."""
    from finetune import adapt_tokenizer  # heavy (torch): imported when the command runs

    m = adapt_tokenizer.run_adapt(load_section(config, "adapt", AdaptConfig), run)
    typer.echo(f"wrote {m['out']}")
    typer.echo(adapt_tokenizer.summarize(m))
