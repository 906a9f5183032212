"""Device and dtype chosen at run time (CUDA bf16, else CPU fp32) and peak memory (CUDA allocator or process RSS)."""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class Runtime:
    """Where a recipe runs: device, compute dtype and whether gradient checkpointing is on."""

    device: torch.device
    dtype: torch.dtype
    gradient_checkpointing: bool

    @property
    def name(self) -> str:
        """Human-readable device name for metrics (GPU model or CPU model)."""
        return device_name(self.device)


def pick_runtime(device: str = "auto", gradient_checkpointing: str = "auto", threads: int | None = None) -> Runtime:
    """Resolve ``auto`` to CUDA when present; bf16 on CUDA (when supported), fp32 on CPU."""
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but torch.cuda.is_available() is False; use device: auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda" if use_cuda else "cpu")
    dtype = torch.bfloat16 if use_cuda and torch.cuda.is_bf16_supported() else torch.float32
    ckpt = {"on": True, "off": False}.get(gradient_checkpointing, use_cuda)
    return Runtime(dev, dtype, ckpt)


def device_name(device: torch.device) -> str:
    """GPU name for CUDA, CPU model and core count otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def cpu_model() -> str:
    """CPU model string from /proc/cpuinfo (or platform)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass

    return platform.processor() or platform.machine()


class PeakMemory:
    """Peak memory over a block: CUDA ``max_memory_allocated`` or sampled process RSS (bytes)."""

    def __init__(self, device: torch.device, interval_s: float = 0.05):
        self.device, self.interval_s = device, interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:

        proc = psutil.Process()
        while True:
            self.peak = max(self.peak, proc.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            if self._thread:
                self._thread.join()

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "process_rss"
