"""The ``quantize`` stage: each configured model quantized by each method and compared with the unquantized one.

Writes ``<run>/models/<name>/quantized/report.json`` (size, tokens/s, held-out bits per byte and perplexity per
method, measured side by side in one run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from serving.models import load_model, load_tokenizer
from serving.quantize.config import QuantizeConfig, QuantizeModelSpec
from serving.quantize.methods import compare
from tokenwise.config import load_section
from tokenwise.rundir import RunDir, hash_obj, read_json, write_json
from tokenwise.splits import is_heldout
from tokenwise.vocab import KeptVocab, RespellingTokenizer


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
