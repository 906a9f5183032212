"""Pad the LM head's input rows to the count its matrix multiply runs fastest at (measured once per model).

A decode step of ``B`` requests multiplies ``[B, hidden]`` by the output embedding ``[vocab, hidden]``. For a large
vocabulary the fp32 GEMM's speed depends on ``B`` in steps, not smoothly: on the 2-core Xeon this project measures on
(torch 2.13, MKL, 2 threads), Gemma 3 270M's head (262k x 640) took 29-36 ms at 1-3 rows, 65-109 ms at 4-9 rows,
124-173 ms at 10-15 and 69 ms at 16 (``bench/batch_step.py`` -> ``batch_step.json``, ``head_ms``): 8 rows cost 1.6x
16. Padding 8 rows with 8 zero rows (their logits are dropped) saves that, and the head is over half a batch-8 step.

:func:`head_row_plan` times the head at each row count up to ``max_rows`` and at the padded candidates, and keeps a
padding only where it measured faster (a table ``rows -> padded rows``); :func:`pad_head_rows` installs it as forward
hooks on the model's output embeddings (removable). Each real row's logits are its own (a row never reads another;
the GEMM's summation order may differ from the unpadded call by float rounding, as any change of batch size does).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import torch

from serving.decode.head_screen import ScreenedHead

PAD_TO = 16  # the row count the padded call uses (MKL's fp32 GEMM switches to its fast path at 16 rows)
MIN_HEAD_MS = 2.0  # heads faster than this at one row are left alone (tiny models: padding could not matter)


def _fp32_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The output embeddings' plain product (inside a :class:`ScreenedHead`, its wrapped Linear: padding applies to
    the unscreened passes only)."""
    head = model.get_output_embeddings()
    return head.linear if isinstance(head, ScreenedHead) else head


def _hidden_size(model: torch.nn.Module) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return cfg.hidden_size


def median_seconds(fn: Any, reps: int) -> float:
    """Median wall time of ``reps`` calls of ``fn`` after one untimed call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_head(head: torch.nn.Module, hidden: int, rows: int, dtype: torch.dtype, device: torch.device,
               reps: int) -> float:  # fmt: skip
    x = torch.zeros(rows, hidden, dtype=dtype, device=device)
    return median_seconds(lambda: head(x), reps)


def head_row_plan(model: torch.nn.Module, max_rows: int, reps: int = 3, margin: float = 0.9) -> dict[int, int]:
    """``{rows: padded rows}`` for the row counts (2..``max_rows``) whose head call measured faster padded to
    :data:`PAD_TO` rows (by at least ``1 - margin``); empty on CUDA, for small heads or when nothing gains."""
    head = _fp32_head(model)
    param = next(model.parameters())
    if head is None or param.device.type != "cpu":
        return {}
    hidden = _hidden_size(model)
    with torch.inference_mode():
        if _time_head(head, hidden, 1, param.dtype, param.device, 1) * 1e3 < MIN_HEAD_MS:
            return {}
        padded = _time_head(head, hidden, PAD_TO, param.dtype, param.device, reps)
        plan = {}
        for rows in range(2, min(max_rows, PAD_TO - 1) + 1):
            if padded < margin * _time_head(head, hidden, rows, param.dtype, param.device, reps):
                plan[rows] = PAD_TO
    return plan


class HeadPadding:
    """Forward hooks on the output embeddings that apply a row plan; :meth:`remove` takes them off."""

    def __init__(self, model: torch.nn.Module, plan: dict[int, int]) -> None:
        self.plan = plan
        self.enabled = True  # False: the hooks pass calls through (benchmarks compare both on one model)
        self._shape = threading.local()  # the caller's row shape, from the pre-hook to the hook of the same call
        head = _fp32_head(model)
        self._handles = [head.register_forward_pre_hook(self._pad), head.register_forward_hook(self._cut)]

    def _pad(self, module: torch.nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        lead = x.shape[:-1]
        rows = lead.numel()
        target = self.plan.get(rows) if self.enabled else None
        self._shape.lead = lead if target else None
        if not target:
            return None
        flat = x.reshape(rows, x.shape[-1])
        return (torch.cat([flat, flat.new_zeros(target - rows, x.shape[-1])]), *args[1:])

    def _cut(self, module: torch.nn.Module, args: tuple, out: Any) -> Any:
        lead = getattr(self._shape, "lead", None)
        if lead is None:
            return None
        self._shape.lead = None
        return out[: lead.numel()].reshape(*lead, out.shape[-1])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def pad_head_rows(model: torch.nn.Module, max_rows: int) -> HeadPadding | None:
    """Measure the head (:func:`head_row_plan`) and install the padding where it gains; None when nothing does."""
    plan = head_row_plan(model, max_rows)
    return HeadPadding(model, plan) if plan else None
