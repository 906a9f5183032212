"""The demo pipeline: every stage that exists, in data-flow order, on one config and one run directory."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from curation.config import validate_file
from curation.log import get_logger

log = get_logger("demo")

# (stage name, "module:function"); each function takes (config_path, run_dir) and returns a one-line summary.
DEMO_STAGES: list[tuple[str, str]] = [
    ("corpus", "curation.corpus:build_from_config"),
    ("quality", "curation.quality:train_from_config"),
    ("score", "curation.score:score_from_config"),
    ("dedup", "curation.dedup:run_stage"),  # after score (needs only the corpus)
    ("decide", "curation.decide:run_stage"),
    ("tokens", "curation.token_counts:run_stage"),
    ("plan", "curation.plans:run_stage"),
    ("tokenizer_train", "curation.tokenizer_train:run_stage"),  # after the plan stage
    ("tokenizer_eval", "curation.tokenizer_eval:run_stage"),
    ("pretrain", "finetune.pretrain:demo_stage"),  # target + draft models sharing the demo tokenizer
    ("lora", "finetune.lora:demo_stage"),  # LoRA of the target on one domain, bpb before/after
    ("quantize", "serving.quantize:run_quantize_stage"),  # int8 size/speed/perplexity vs unquantized, per model
    ("serve", "serving.commands_serve:run_serve_stage"),  # after finetune/quantize: router calibration + API check
    ("measure", "serving.measure.run:measure_from_config"),  # baseline vs optimized stacks through the HTTP API
    ("report", "curation.report.build:report_from_config"),  # last: reads every stage's outputs
]


def run_demo(config: str | Path, run: str, only: list[str] | None = None) -> dict[str, str]:
    """Validate the config, then run each demo stage in order; returns stage → summary."""
    validate_file(config)
    summaries: dict[str, str] = {}
    t_all = time.perf_counter()
    for name, target in DEMO_STAGES:
        if only and name not in only:
            continue
        module, _, fn = target.partition(":")
        t0 = time.perf_counter()
        summary = getattr(importlib.import_module(module), fn)(str(config), run)
        summaries[name] = summary
        print(f"[{name}] {summary} ({time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"demo finished in {time.perf_counter() - t_all:.1f}s; outputs under {run}/", flush=True)
    report = Path(run) / "report" / "index.html"
    if report.exists():
        print(f"report: {report.resolve()}", flush=True)
    return summaries
