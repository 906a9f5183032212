"""The ``quantize`` stage: each configured model quantized by each method and compared with the unquantized one.

Writes ``<run>/models/<name>/quantized/report.json`` (size, tokens/s, held-out bits per byte and perplexity per
method, measured side by side in one run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import Field

from serving.models import load_model, load_tokenizer
from serving.quantize.methods import QUANTIZERS, compare
from tokenwise.config import BaseConfig, load_section
from tokenwise.rundir import RunDir, hash_obj, read_json, write_json
from tokenwise.splits import is_heldout
from tokenwise.vocab import KeptVocab, RespellingTokenizer


class QuantizeModelSpec(BaseConfig):
    """One model to quantize and the methods to compare on it."""

    name: str = Field(..., min_length=1, description="Model name, e.g. target; its dir is {run}/models/<name>.")
    path: str | None = Field(None, description="HF model dir (may use {run}); default {run}/models/<name>.")
    methods: list[str] = Field(
        default_factory=lambda: ["int8_weight_only", "int8_dynamic"],
        description="Quantizers compared with the unquantized model (int4_weight_only needs CUDA; skipped on CPU).",
    )

    def model_post_init(self, __context: Any) -> None:
        bad = [m for m in self.methods if m not in QUANTIZERS]
        if bad:
            raise ValueError(f"unknown quantization {bad[0]!r}; expected one of: {', '.join(QUANTIZERS)}")


class QuantizeConfig(BaseConfig):
    """The ``quantize:`` section: which models are quantized how, and how the report measures them."""

    models: list[QuantizeModelSpec] = Field(
        default_factory=lambda: [QuantizeModelSpec(name="target"), QuantizeModelSpec(name="draft")],
        description="Models to report on.",
    )
    eval_docs: int = Field(32, ge=1, le=100000, description="Held-out documents scored for bits per byte.")
    eval_chars: int = Field(2000, ge=64, description="Characters kept per held-out document.")
    seq_len: int = Field(256, ge=8, le=8192, description="Tokens per scoring window.")
    speed_prompts: int = Field(4, ge=1, le=1000, description="Prompts decoded to measure tokens/s.")
    new_tokens: int = Field(32, ge=1, le=4096, description="Tokens decoded per speed prompt.")
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="auto = CUDA when present, else CPU.")


def model_dir(run_dir: str | Path, spec: QuantizeModelSpec) -> Path:
    """Where a model of the quantize section lives."""
    if spec.path:
        return Path(spec.path.replace("{run}", str(run_dir)))
    return Path(run_dir) / "models" / spec.name


def heldout_texts(run_dir: str | Path, limit: int, max_chars: int) -> list[str]:
    """Held-out documents (curated if present, else the corpus), first ``max_chars`` characters each."""


    for sub in ("curated", "corpus"):
        shards = sorted((Path(run_dir) / sub).glob("shard-*.parquet"))
        if shards:
            break
    else:
        raise FileNotFoundError(f"{run_dir}: no curated/ or corpus/ shards for held-out text; run corpus first")
    out: list[str] = []
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "text", "unit_id"]).to_pylist()
        for row in table:
            if row["text"] and is_heldout(row["id"], row["unit_id"]):
                out.append(row["text"][:max_chars])
                if len(out) >= limit:
                    return out
    return out


def run_quantize_stage(config_path: str, run_dir: str) -> str:
    """Demo stage: report each configured model's quantizations vs unquantized; writes models/<name>/quantized/."""
    cfg = load_section(config_path, "quantize", QuantizeConfig)
    rd = RunDir(run_dir)
    texts = heldout_texts(run_dir, cfg.eval_docs, cfg.eval_chars)
    parts = []
    for spec in cfg.models:
        path = model_dir(run_dir, spec)
        if not (path / "config.json").is_file():
            parts.append(f"{spec.name}: no model at {path}")
            continue
        key = hash_obj([cfg.model_dump(), spec.model_dump(), (path / "config.json").stat().st_mtime])
        stage = f"models/{spec.name}/quantized"
        out = path / "quantized" / "report.json"
        if not rd.is_done(stage, key):
            tok = load_tokenizer(path)
            kept = KeptVocab.find(path)  # a local-vocabulary model scores and decodes respelled text
            tok = RespellingTokenizer(tok, kept) if kept is not None else tok
            prompts = [tok.encode(t[:200], add_special_tokens=False) for t in texts[: cfg.speed_prompts]]
            load = lambda p=path: load_model(p, cfg.device)  # noqa: E731
            rows = compare(load, tok, spec.methods, texts, prompts, cfg.new_tokens, cfg.seq_len)
            write_json(out, {"model": str(path), "eval_docs": len(texts), "methods": rows})
            rd.mark_done(stage, key)
        parts.append(f"{spec.name}: " + _summary(read_report(out)))
    return f"wrote {run_dir}/models/*/quantized/report.json; " + "; ".join(parts)


def read_report(path: Path) -> dict[str, Any]:
    """A quantization report written by :func:`run_quantize_stage`."""
    return read_json(path)


def _summary(report: dict[str, Any]) -> str:
    bits = []
    for method, row in report["methods"].items():
        if method == "none":
            continue
        if "skipped" in row:
            bits.append(f"{method} skipped")
        else:
            bits.append(
                f"{method} {row['size_ratio']:.2f}x smaller, ppl {row['perplexity_increase']:+.2%}, "
                f"{row['speed_ratio']:.2f}x tok/s"
            )
    return ", ".join(bits)
