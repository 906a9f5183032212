"""int8 x int8 linear layers for CPU decoding, with the few outlier input dimensions kept exact in fp32.

A CPU decode step reads every weight once per token, so its time is mostly bytes of weights: fp32 Gemma 3 270M reads
~1 GB per step. torchao's ``int8_weight_only`` stores int8 but dequantizes before an fp32 GEMV (slower than fp32 on
CPU), and int8 x int8 matmuls with one activation scale lose the small dimensions next to the hidden state's outliers
(a few dimensions 10-100x the median, as in LLM.int8()). :class:`Int8OutlierLinear` does both halves properly:

- the weights in int8 per output row, multiplied with int8 activations by the CPU's int8 GEMM (``quantized::
  linear_dynamic``: fbgemm / oneDNN, VNNI where present; activations 8-bit, ``reduce_range=False``);
- the input dimensions whose calibration magnitude is well above the median (:data:`OUTLIER_RATIO`; at most
  :data:`MAX_OUTLIER_SHARE` of them, at least the largest two) zeroed before the int8 product and added back exactly,
  in fp32, against their weight columns (the LLM.int8() decomposition);
- batch invariance: the backend quantizes a call's activations with one scale from the call's range, so a row's
  result would depend on the rows beside it (a verify pass of speculative decoding would then disagree with plain
  decoding). Each row is scaled to max ``|x| = 1`` and two of its zeroed dimensions are set to -1 and +1 (their
  weight columns are zero in the int8 copy), so every call's range is exactly [-1, 1] and each row's product is the
  same whatever rows share the call.

:func:`quantize_int8_outliers` picks each layer's outlier dimensions on one calibration pass (seeded random token ids:
which dimensions carry outliers is a property of the weights, not of the text) and replaces every ``nn.Linear``,
the LM head included (it keeps a ``weight`` attribute, shared with the input embeddings when tied), with one; a
layer whose int8 output is off by more than :data:`MAX_REL_ERROR` from fp32 on that pass (a backend whose int8 GEMM
saturates) stays fp32, with a warning. Figures: the compaction report's ``compact_int8_dynamic_outliers`` row and the
measurement's ``quantized`` stack (``bench/gemma.py --only run``); ``bench/gemma.py --only compact`` times it too.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

OUTLIER_RATIO = 2.0  # an input dimension is an outlier when its max |x| is this many times the median dimension's
MAX_OUTLIER_SHARE = 1 / 4  # at most this share of a layer's input dimensions are kept in fp32 (largest first)
# (2.0, 1/4) rather than (6.0, 1/16): on 20 held-out prompts of the demo (a probe, not a published figure) greedy
# output agreed with fp32 on about twice as many prompts, at a decode time within the machine's noise
MAX_REL_ERROR = 0.05  # a layer whose int8 output differs more from fp32 (relative Frobenius) on calibration stays fp32
CALIBRATION_TOKENS = 128


def pack_int8_rows(w: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``w`` [out, in] (fp32) as the int8 GEMM's packed weights, symmetric with a scale per row, and those scales."""
    s_w = w.abs().amax(1).clamp_min(1e-30) / 127.0
    with warnings.catch_warnings():  # quantized tensor constructors warn of a future deprecation (torch 2.13)
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_channel(w, s_w.double(), torch.zeros_like(s_w, dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None), s_w


class Int8OutlierLinear(nn.Module):
    """``linear`` as an int8 x int8 product plus an exact fp32 product over its ``outliers`` input dimensions."""

    def __init__(self, linear: nn.Linear, outliers: torch.Tensor) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        if outliers.numel() < 2:
            raise ValueError("Int8OutlierLinear: at least two outlier dimensions (they pin the activation range)")
        self.register_buffer("outliers", outliers.to(torch.long), persistent=False)  # the first two: the pins
        self.register_buffer("_pins", torch.tensor([[-1.0, 1.0]]), persistent=False)
        self.register_buffer("w_outlier_t", w[:, self.outliers].T.contiguous(), persistent=False)  # [k, out]
        self._packed, _ = pack_int8_rows(w.index_fill(1, self.outliers, 0.0))  # int8 [out, in]
        self.packed_bytes = w.numel() + 12 * self.out_features  # int8 weights + per-row scale/zero point (reported)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float()
        if not len(flat):  # a pass that keeps no positions (a prompt chunk mid-prompt in the batch engine)
            return x.new_zeros(*shape[:-1], self.out_features)
        y = _int8_outlier_product(flat, self.outliers, self._pins, self._packed, self.w_outlier_t)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, outliers={self.outliers.numel()}"


def _int8_outlier_product_eager(
    flat: torch.Tensor,
    outliers: torch.Tensor,
    pins: torch.Tensor,
    packed: torch.classes.quantized.LinearPackedParamsBase,
    w_outlier_t: torch.Tensor,
) -> torch.Tensor:
    """``flat @ W.T`` [n, out]: int8 over the rest, fp32 over ``outliers``."""
    rest = flat.index_fill(1, outliers, 0.0)
    unit = torch.linalg.vector_norm(rest, float("inf"), dim=1, keepdim=True).clamp_min_(1e-30)
    rest.div_(unit).index_copy_(1, outliers[:2], pins.expand(rest.shape[0], 2))  # range pinned: [-1, 1]
    y = torch.ops.quantized.linear_dynamic(rest, packed, False).mul_(unit)
    return y.add_(flat.index_select(1, outliers) @ w_outlier_t)  # not addmm_: its rounding depends on the rows


# scripted: its ~10 small ops run in one call without taking the GIL for each (in a server, the other requests'
# threads stalled every one of them: 2-3x slower decode at concurrency 2); torch 2.13 deprecates jit.script
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _int8_outlier_product = torch.jit.script(_int8_outlier_product_eager)
except (RuntimeError, AttributeError) as e:  # a torch without TorchScript or the quantized classes: eager, same math
    log.debug("int8_dynamic_outliers: eager product (%s)", e)
    _int8_outlier_product = _int8_outlier_product_eager


def outlier_dims(
    amax: torch.Tensor, ratio: float = OUTLIER_RATIO, max_share: float = MAX_OUTLIER_SHARE
) -> torch.Tensor:
    """Input dimensions whose max ``|x|`` exceeds ``ratio`` x the median dimension's (the largest ``max_share``, at
    least the largest two), largest first."""
    big = int((amax > ratio * amax.median()).sum())
    return amax.topk(max(2, min(big, int(amax.numel() * max_share)))).indices


def _linear_inputs(model: nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every ``nn.Linear``'s input rows [positions, in] on one pass over ``input_ids``, by module name."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        mod.register_forward_pre_hook(lambda _m, args, n=name: seen.setdefault(n, args[0].detach().flatten(0, -2)))
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear)
    ]
    try:
        with torch.inference_mode():
            model(input_ids=input_ids)
    finally:
        for h in hooks:
            h.remove()
    return seen


def quantize_int8_outliers(model: nn.Module, tokens: int = CALIBRATION_TOKENS, seed: int = 0) -> dict[str, Any]:
    """Replace every ``nn.Linear`` of a CPU fp32 ``model`` (in place) with an :class:`Int8OutlierLinear`.

    Returns the stats: layers quantized, kept fp32 (error above :data:`MAX_REL_ERROR`), outlier dimensions, the
    largest relative error on the calibration pass. Tied output embeddings keep their fp32 weight for the input side.
    """
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError(f"int8_dynamic_outliers needs a CPU fp32 model, got {param.device.type} {param.dtype}")
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(seed))
    inputs = _linear_inputs(model, ids)
    modules = dict(model.named_modules())
    head = model.get_output_embeddings()
    stats: dict[str, Any] = {"quantized": 0, "kept_fp32": [], "outlier_dims": 0, "max_rel_error": 0.0}
    for name, x in inputs.items():
        linear = modules[name]
        q = Int8OutlierLinear(linear, outlier_dims(x.abs().amax(0).float()))
        with torch.inference_mode():
            ref = linear(x)
            err = float((q(x) - ref).norm() / ref.norm().clamp_min(1e-30))
        if not err <= MAX_REL_ERROR:  # also NaN
            stats["kept_fp32"].append(name)
            log.warning("int8_dynamic_outliers: %s kept fp32 (relative error %.3f on calibration)", name, err)
            continue
        if linear is head:  # read by code that slices, pads or ties the output embeddings (tied: no extra memory)
            q.weight = linear.weight
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, q)
        stats["quantized"] += 1
        stats["outlier_dims"] += q.outliers.numel()
        stats["max_rel_error"] = max(stats["max_rel_error"], err)
    return stats
