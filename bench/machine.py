"""The machine a benchmark ran on, recorded in every bench/results/*.json (CPU model, cores, memory, GPU)."""

from __future__ import annotations

import os
import platform

import psutil


def machine() -> dict:
    """CPU model, cores, memory, GPU name (None without CUDA) and Python/torch versions."""
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu, torch_version = None, None
    try:
        import torch

        torch_version = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch_version,
    }
