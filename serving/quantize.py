"""Weight quantization with torchao's ``quantize_`` behind one interface, and its report against the unquantized model.

Quantizers (:data:`QUANTIZERS`): ``int8_weight_only`` (int8 weights, per-channel scales, float activations),
``int8_dynamic`` (int8 weights and per-token dynamically quantized int8 activations), ``int4_weight_only``
(group-wise int4 weights; torchao's kernels need CUDA, so it raises :class:`QuantizationUnsupported` on CPU).
Only ``nn.Linear`` layers are quantized (torchao's default filter); embeddings stay in float.

:func:`weight_bytes` sums the storage of every parameter and buffer once; torchao tensor subclasses are flattened
(``__tensor_flatten__``) to their inner tensors (int8 data, scales, zero points), so the size is what sits in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from curation.config import BaseConfig


class QuantizationUnsupported(RuntimeError):
    """The quantizer cannot run on this device; the message names the fix."""


@dataclass(frozen=True)
class Quantizer:
    """A named torchao quantization recipe and the devices it runs on."""

    name: str
    description: str
    make_config: Callable[[], Any]
    devices: tuple[str, ...] = ("cpu", "cuda")

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        """Quantize ``model``'s linear layers in place; returns the model."""
        from torchao.quantization import quantize_

        device = next(model.parameters()).device.type
        if device not in self.devices:
            raise QuantizationUnsupported(
                f"{self.name} needs a {' or '.join(self.devices)} device (torchao kernels), the model is on {device}; "
                "use int8_weight_only or int8_dynamic on CPU"
            )
        quantize_(model, self.make_config())
        return model


def _int8_weight_only() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def _int8_dynamic() -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    return Int8DynamicActivationInt8WeightConfig()


def _int4_weight_only() -> Any:
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=128)


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q
    for q in (
        Quantizer("int8_weight_only", "int8 weights, float activations", _int8_weight_only),
        Quantizer("int8_dynamic", "int8 weights and dynamic per-token int8 activations", _int8_dynamic),
        Quantizer("int4_weight_only", "int4 weights in groups of 128 (CUDA only)", _int4_weight_only, ("cuda",)),
    )
}


def quantize_model(model: torch.nn.Module, method: str) -> torch.nn.Module:
    """Quantize ``model`` in place with the named quantizer (``none`` leaves it unchanged)."""
    if method == "none":
        return model
    if method not in QUANTIZERS:
        raise ValueError(f"unknown quantization {method!r}; expected one of: none, {', '.join(QUANTIZERS)}")
    return QUANTIZERS[method].apply(model)


def _leaf_tensors(t: torch.Tensor) -> list[torch.Tensor]:
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return [leaf for n in names for leaf in _leaf_tensors(getattr(t, n))]
    if isinstance(t, torch.nn.Parameter) and type(t.data) is not torch.Tensor:
        return _leaf_tensors(t.data)
    return [t]


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers in memory, each storage counted once (tied weights once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        for leaf in _leaf_tensors(t):
            key = (str(leaf.device), leaf.untyped_storage().data_ptr())
            if key in seen:
                continue
            seen.add(key)
            total += leaf.untyped_storage().nbytes()
    return total


def heldout_loss(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], seq_len: int = 256) -> dict[str, float]:
    """Bits per byte and perplexity of ``texts`` (each scored in windows of ``seq_len`` tokens)."""
    nll, tokens, nbytes = 0.0, 0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False)
            nbytes += len(text.encode("utf-8"))
            for s in range(0, max(len(ids) - 1, 0), seq_len):
                window = torch.tensor([ids[s : s + seq_len + 1]], device=model.device)
                if window.shape[1] < 2:
                    continue
                logits = model(input_ids=window[:, :-1]).logits.float()
                loss = torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum")
                nll += float(loss)
                tokens += window.shape[1] - 1
    if not tokens:
        raise ValueError("held-out texts produced no tokens to score; pass non-empty documents")
    return {"bits_per_byte": nll / math.log(2) / nbytes, "perplexity": math.exp(nll / tokens), "tokens": tokens}


def decode_speed(model: torch.nn.Module, prompts: Sequence[Sequence[int]], new_tokens: int = 32) -> float:
    """Greedy decode tokens per second (target-only, KV cache) over ``prompts``."""
    from serving.generate import Stream, target_stream

    produced, elapsed = 0, 0.0
    for p in prompts:
        t0 = time.perf_counter()
        toks, _ = Stream(target_stream(model, p, new_tokens)).run()
        elapsed += time.perf_counter() - t0
        produced += len(toks)
    return produced / elapsed


def compare(
    load: Callable[[], torch.nn.Module],
    tokenizer: Any,
    methods: Sequence[str],
    texts: Sequence[str],
    prompts: Sequence[Sequence[int]],
    new_tokens: int = 32,
    seq_len: int = 256,
) -> dict[str, Any]:
    """Size, tokens/s and held-out bits per byte / perplexity of each method vs the unquantized model, same run.

    ``load`` returns a fresh unquantized model each call. Unsupported methods are reported with their reason.
    """
    rows: dict[str, Any] = {}
    for method in ["none", *methods]:
        model = load()
        try:
            quantize_model(model, method)
        except QuantizationUnsupported as e:
            rows[method] = {"skipped": str(e)}
            continue
        rows[method] = {
            "weight_bytes": weight_bytes(model),
            "tokens_per_second": decode_speed(model, prompts, new_tokens),
            **heldout_loss(model, tokenizer, texts, seq_len),
        }
    base = rows["none"]
    for method, row in rows.items():
        if method != "none" and "skipped" not in row:
            row["size_ratio"] = base["weight_bytes"] / row["weight_bytes"]
            row["speed_ratio"] = row["tokens_per_second"] / base["tokens_per_second"]
            row["perplexity_increase"] = row["perplexity"] / base["perplexity"] - 1.0
            row["bits_per_byte_increase"] = row["bits_per_byte"] / base["bits_per_byte"] - 1.0
    return rows


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
    import pyarrow.parquet as pq

    from curation.splits import is_heldout

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
    from curation.config import load_section
    from curation.rundir import RunDir, hash_obj, write_json
    from serving.models import load_model, load_tokenizer

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
            prompts = [tok.encode(t[:200], add_special_tokens=False) for t in texts[: cfg.speed_prompts]]
            load = lambda p=path: load_model(p, cfg.device)  # noqa: E731
            rows = compare(load, tok, spec.methods, texts, prompts, cfg.new_tokens, cfg.seq_len)
            write_json(out, {"model": str(path), "eval_docs": len(texts), "methods": rows})
            rd.mark_done(stage, key)
        parts.append(f"{spec.name}: " + _summary(read_report(out)))
    return f"wrote {run_dir}/models/*/quantized/report.json; " + "; ".join(parts)


def read_report(path: Path) -> dict[str, Any]:
    """A quantization report written by :func:`run_quantize_stage`."""
    from curation.rundir import read_json

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
