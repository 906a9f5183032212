"""Decide's peak memory over signals sizes: it streams shard by shard, so peak RSS stays flat from 20 to 200 MB.

Run: ``.venv/bin/python bench/decide.py [--small]`` -> ``bench/results/decide.json``.

Signals shards are written with the scorer's real columns (every heuristic rule value, LID, sizes, cl100k tokens)
and the dedup columns, ~10 MB of Parquet per shard, with a small corpus shard beside each (decide copies the kept
documents); values are drawn from distributions shaped like the demo's signals (documents of 1-2000 words, LID
scores near 1, fractions in [0, 1]). ``tokenwise curate decide`` then runs in a fresh interpreter per size with the
demo config's decide rules, and its peak RSS (VmHWM) is reported beside the RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "decide.json"
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

LANGS = ["en", "de", "fr", "es", "ru", "ja", "zh_CN", "ko", "ar", "hi", "bn", "ta", "te", "my", "th"]
DOMAINS = ["ui", "code", "docs"]


def write_shards(run: Path, target_mb: float, rows_per_shard: int = 40_000, seed: int = 0) -> dict:
    """Signals + dedup + corpus shards until the signals reach ``target_mb`` of Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.signals.heuristics import COLUMNS, INT_COLUMNS
    from tokenwise.documents import CORPUS_SCHEMA

    rng = np.random.default_rng(seed)
    for sub in ("corpus", "signals", "signals/dedup"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    size, i, rows = 0, 0, 0
    while size < target_mb * 1e6:
        n = rows_per_shard
        ids = [f"doc-{i}-{j}" for j in range(n)]
        words = rng.integers(1, 2000, n)
        langs = rng.choice(LANGS, n)
        cols = {"id": ids, "source": ["bench"] * n, "lang": langs, "domain": rng.choice(DOMAINS, n),
                "unit_id": pa.nulls(n, pa.string()), "bytes": words * 6, "chars": words * 5, "words": words,
                "lid_label": langs, "lid_score": rng.beta(8, 1, n), "lid_script": ["Latn"] * n,
                "lid_model_label": langs, "lid_model_score": rng.beta(8, 1, n), "quality_score": rng.random(n),
                "tokens_cl100k_base": words * 2}  # fmt: skip
        for c in COLUMNS:
            cols[c] = words if c in INT_COLUMNS else rng.random(n)
        pq.write_table(pa.table(cols), run / f"signals/shard-{i:05d}.parquet")
        size += (run / f"signals/shard-{i:05d}.parquet").stat().st_size
        cluster = np.arange(rows, rows + n)
        dup = rng.random(n) < 0.05
        cluster[dup] = np.maximum(cluster[dup] - 1, rows)
        pq.write_table(pa.table({"id": ids, "dup_cluster_id": cluster, "dup_cluster_size": 1 + dup.astype(int),
                                 "dup_is_representative": ~dup, "dup_exact": dup}),
                       run / f"signals/dedup/shard-{i:05d}.parquet")  # fmt: skip
        corpus = {"id": ids, "text": [f"text {k}" for k in range(n)], "source": ["bench"] * n, "lang": langs,
                  "domain": cols["domain"], "unit_id": pa.nulls(n, pa.string())}  # fmt: skip
        pq.write_table(pa.Table.from_pydict(corpus, schema=CORPUS_SCHEMA), run / f"corpus/shard-{i:05d}.parquet")
        i, rows = i + 1, rows + n
    return {"signals_mb": size / 1e6, "shards": i, "rows": rows}


_CHILD = """
import json, sys, time, yaml
sys.path.insert(0, {root!r})
from curation.decide.decisions import DecideConfig, run_decide
def hwm():  # peak RSS of this process (VmHWM resets at exec)
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024
import datatrove.utils.stats  # imported by decide: counted in the after-imports figure
rss0 = hwm()
cfg = DecideConfig.model_validate(yaml.safe_load(open({config!r}))["decide"])
t0, c0 = time.perf_counter(), time.process_time()
s = run_decide({run!r}, cfg, force=True)
print(json.dumps({{"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                  "rss_after_imports_mb": rss0, "peak_rss_mb": hwm(), "input": s["input"], "kept": s["kept"],
                  "reconciles": s["reconciles"]}}))
"""


def rss_run(run: Path, root: Path = ROOT) -> dict:
    """``root``'s decide (this checkout, or another one as a baseline) with its demo config's rules."""
    code = _CHILD.format(root=str(root), run=str(run), config=str(root / "configs" / "demo.yaml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="2 and 20 MB instead of 20 and 200 MB")
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout (e.g. /work/main) measured too")
    args = ap.parse_args()
    sizes = [2, 20] if args.small else [20, 200]
    result: dict = {"machine": machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-decide-") as tmp:
        for mb in sizes:
            run = Path(tmp) / f"run{mb}"
            info = write_shards(run, mb)
            r = {"target_mb": mb, **info, **rss_run(run)}
            r["peak_over_imports_mb"] = r["peak_rss_mb"] - r["rss_after_imports_mb"]
            if args.baseline:
                base = rss_run(run, args.baseline)
                r["baseline"] = {"root": str(args.baseline), **base}
            print(json.dumps(r), flush=True)
            result["sizes"].append(r)
    a, b = result["sizes"]
    result["summary"] = {
        "signals_mb": [a["signals_mb"], b["signals_mb"]],
        "peak_rss_mb": [a["peak_rss_mb"], b["peak_rss_mb"]],
        "peak_rss_ratio_large_over_small": b["peak_rss_mb"] / a["peak_rss_mb"],
        "signals_ratio": b["signals_mb"] / a["signals_mb"],
        "flat": b["peak_rss_mb"] <= 1.25 * a["peak_rss_mb"],
    }
    if args.baseline:
        result["summary"]["baseline_peak_rss_mb"] = [a["baseline"]["peak_rss_mb"], b["baseline"]["peak_rss_mb"]]
    print(json.dumps(result["summary"], indent=1))
    out = OUT if not args.small else OUT.with_name("decide_small.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
