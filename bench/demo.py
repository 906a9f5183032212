"""`make demo`'s cost: every demo stage from an empty run directory with the shipped configs/demo.yaml, timed per
stage, with the corpus it built; writes bench/results/demo.json (the README's "make demo after install" row).

    .venv/bin/python bench/demo.py [--run DIR] [--keep] [--no-rerun]

Runs ``tokenwise demo`` as a subprocess (what `make demo` runs) in a fresh run directory (a temporary one unless
``--run`` names one) with an empty model cache (``TOKENWISE_MODEL_CACHE``: the Gemma conversion is timed as on a fresh
clone), parses its ``[stage] summary (Ns)`` lines, then runs the same command again on the same run directory (nothing
changed: every stage should skip) and records both. Each run also records its CPU seconds (the demo and every process
it started) and the 1-minute load average before and after: on a shared machine the wall time includes other jobs'
share of the cores, the CPU time does not. Slow: the whole pipeline on Gemma 3 270M.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

STAGE_LINE = re.compile(r"^\[(?P<stage>[\w-]+)\] (?P<summary>.*) \((?P<seconds>[\d.]+)s\)$")


def corpus_stats(run: Path) -> dict:
    """Documents, MB and languages of the corpus the demo built (from its manifest)."""
    manifest = run / "corpus" / "manifest.json"
    if not manifest.is_file():
        return {}
    m = json.loads(manifest.read_text())
    langs = m.get("by_lang", {})
    return {"documents": m.get("documents"), "mb": round(m.get("bytes", 0) / 1e6, 1), "languages": len(langs)}


def measured_savings(run: Path) -> dict:
    """Per stack of the demo's measurement: saved tokens and cost (baseline tokenizer on the same text) with the
    quality change beside them (from measure/summary.json)."""
    path = run / "measure" / "summary.json"
    if not path.is_file():
        return {}
    s = json.loads(path.read_text())
    keys = ("saved_tokens_share", "saved_spend_share", "bits_per_byte_delta_rel", "quality_delta")
    return {"baseline": s["baseline"], "basis": s.get("savings_basis"),
            "stacks": {n: {k: t.get(k) for k in keys} for n, t in s["stacks"].items()}}  # fmt: skip


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (the demo and everything it started)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_demo(run: Path, env: dict[str, str]) -> dict:
    """One ``tokenwise demo`` on ``run``: exit code, wall seconds, per-stage seconds and summaries."""
    cmd = [sys.executable, "-c", "from tokenwise.cli import main; main()", "demo", "--config",
           str(ROOT / "configs" / "demo.yaml"), "--run", str(run)]  # fmt: skip
    load_before = os.getloadavg()[0]
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    stages = {}
    for line in proc.stdout.splitlines():
        m = STAGE_LINE.match(line.strip())
        if m:
            stages[m["stage"]] = {"seconds": float(m["seconds"]), "summary": m["summary"]}
    out = {"exit_code": proc.returncode, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
           "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "stages": stages}  # fmt: skip
    if proc.returncode:
        out["stderr_tail"] = proc.stderr[-3000:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="run directory (must not exist; default a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    ap.add_argument("--no-rerun", action="store_true", help="skip the second (nothing changed) run")
    args = ap.parse_args()
    run = Path(args.run) if args.run else Path(tempfile.mkdtemp(prefix="tokenwise-demo-")) / "run"
    if run.exists():
        raise SystemExit(f"{run} exists; the demo is timed from an empty run directory")
    cache = run.parent / f"{run.name}-model-cache"  # empty: the source stage converts Gemma as on a fresh clone
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "TOKENWISE_MODEL_CACHE": str(cache)}
    first = run_demo(run, env)
    result = {
        "machine": machine(),
        "command": "tokenwise demo --config configs/demo.yaml --run <empty dir> (empty model cache)",
        **first,
        "corpus": corpus_stats(run),
        "measure": measured_savings(run),
    }
    if not args.no_rerun and first["exit_code"] == 0:
        again = run_demo(run, env)
        result["rerun"] = {"command": "the same command again on the same run directory (nothing changed)", **again}
    rc = first["exit_code"] or result.get("rerun", {}).get("exit_code", 0)
    out = ROOT / "bench" / "results" / "demo.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages", "rerun")}, indent=1))
    if "rerun" in result:
        print(f"rerun: exit {result['rerun']['exit_code']}, {result['rerun']['seconds']}s")
    print(f"wrote {out}")
    if not args.run and not args.keep:
        shutil.rmtree(run.parent, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
