"""Weight quantization with torchao's ``quantize_`` behind one interface, and its report against the unquantized model.

Quantizers (:data:`QUANTIZERS`): ``int8_weight_only`` (int8 weights, per-channel scales, float activations),
``int8_dynamic`` (int8 weights and per-token dynamically quantized int8 activations), ``int4_weight_only``
(group-wise int4 weights; torchao's kernels need CUDA, so it raises :class:`QuantizationUnsupported` on CPU), and
``int8_dynamic_outliers`` (CPU only, not torchao: int8 x int8 products with the outlier input dimensions in fp32,
:mod:`serving.quantize.int8_outliers`; the fast one on CPU). Only ``nn.Linear`` layers are quantized; embeddings stay
in float.

:func:`weight_bytes` sums the storage of every parameter and buffer once; torchao tensor subclasses are flattened
(``__tensor_flatten__``) to their inner tensors (int8 data, scales, zero points), so the size is what sits in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from serving.decode.generate import Stream, target_stream


class QuantizationUnsupported(RuntimeError):
    """The quantizer cannot run on this device; the message names the fix."""


@dataclass(frozen=True)
class Quantizer:
    """A named quantization recipe (a torchao config, or a function that quantizes a model in place) and the devices
    it runs on."""

    name: str
    description: str
    make_config: Callable[[], Any] | None
    devices: tuple[str, ...] = ("cpu", "cuda")
    quantize: Callable[[torch.nn.Module], Any] | None = None

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        """Quantize ``model``'s linear layers in place; returns the model."""
        device = next(model.parameters()).device.type
        if device not in self.devices:
            fix = "int8_weight_only or int8_dynamic" if device == "cuda" else "int8_dynamic_outliers or int8_dynamic"
            raise QuantizationUnsupported(
                f"{self.name} needs a {' or '.join(self.devices)} device, the model is on {device}; use {fix} there"
            )
        if self.quantize is not None:
            self.quantize(model)
            return model
        from torchao.quantization import quantize_  # heavy: deferred until used

        quantize_(model, self.make_config())
        return model


def _int8_weight_only() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig  # heavy: deferred until used

    return Int8WeightOnlyConfig()


def _int8_dynamic() -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig  # heavy: deferred until used

    return Int8DynamicActivationInt8WeightConfig()


def _int8_outliers(model: torch.nn.Module) -> Any:
    from serving.quantize.int8_outliers import quantize_int8_outliers  # torch only; kept beside its siblings

    return quantize_int8_outliers(model)


def _int4_weight_only() -> Any:
    from torchao.quantization import Int4WeightOnlyConfig  # heavy: deferred until used

    return Int4WeightOnlyConfig(group_size=128)


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q
    for q in (
        Quantizer("int8_weight_only", "int8 weights, float activations", _int8_weight_only),
        Quantizer("int8_dynamic", "int8 weights and dynamic per-token int8 activations", _int8_dynamic),
        Quantizer("int4_weight_only", "int4 weights in groups of 128 (CUDA only)", _int4_weight_only, ("cuda",)),
        Quantizer(
            "int8_dynamic_outliers",
            "int8 weights and activations, outlier input dims in fp32 (CPU only)",
            None,
            ("cpu",),
            _int8_outliers,
        ),
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
    """Bytes of parameters, buffers and packed int8 weights in memory, each storage once (tied weights once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        for leaf in _leaf_tensors(t):
            key = (str(leaf.device), leaf.untyped_storage().data_ptr())
            if key in seen:
                continue
            seen.add(key)
            total += leaf.untyped_storage().nbytes()
    # packed int8 weights (int8_dynamic_outliers) live in the backend's packed params, not in a parameter or buffer
    return total + sum(getattr(m, "packed_bytes", 0) for m in model.modules())


def heldout_loss(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], seq_len: int = 256, prefix: Sequence[int] = ()
) -> dict[str, float]:
    """Bits per byte and perplexity of ``texts`` (each scored in windows of ``seq_len`` tokens).

    ``prefix`` (e.g. ``[bos]`` for models trained with one, such as Gemma) is the context of each document's first
    window and is not scored itself.
    """
    nll, tokens, nbytes = 0.0, 0, 0
    with torch.inference_mode():
        for text in texts:
            ids = list(prefix) + tokenizer.encode(text, add_special_tokens=False)
            nbytes += len(text.encode("utf-8"))
            first = max(len(prefix) - 1, 0)  # the first window predicts from the prefix's last token on
            for s in range(first, max(len(ids) - 1, 0), seq_len):
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
