"""The demo pipeline: every demo stage of the registry, in data-flow order, on one config and one run directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tokenwise.registry import Registry

log = logging.getLogger(__name__)


def run_demo(registry: Registry, config: str | Path, run: str, only: list[str] | None = None) -> dict[str, str]:
    """Validate the config, then run each demo stage (or only the named ones) in order; returns stage → summary."""
    registry.validate_file(config)
    if only:
        unknown = [n for n in only if n not in {s.name for s in registry.stages}]
        if unknown:
            names = ", ".join(s.name for s in registry.stages)
            raise ValueError(f"unknown stage {unknown[0]!r}; expected one of: {names}")
    summaries: dict[str, str] = {}
    t_all = time.perf_counter()
    stages = [s for s in registry.stages if s.name in only] if only else registry.demo_stages()
    for stage in stages:
        t0 = time.perf_counter()
        summaries[stage.name] = stage.run(str(config), run)
        print(f"[{stage.name}] {summaries[stage.name]} ({time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"demo finished in {time.perf_counter() - t_all:.1f}s; outputs under {run}/", flush=True)
    report = Path(run) / "report" / "index.html"
    if report.exists():
        print(f"report: {report.resolve()}", flush=True)
    return summaries
