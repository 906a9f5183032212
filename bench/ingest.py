"""Ingestion speed and memory: ``tokenwise corpus build`` vs ``polars.read_ndjson`` + ``write_parquet``, same data.

Run: ``.venv/bin/python bench/ingest.py [--small]``. Generates JSONL (8 files) under a temp dir at two sizes (50 and
200 MB; 5 and 20 MB with --small) with ~0.1% bad lines, then for each size runs in fresh subprocesses:

* **ours**: the corpus build (JSONL source, zstd Parquet shards, manifest, quarantine) on the files with bad lines;
* **polars**: ``pl.read_ndjson`` of each file + ``write_parquet`` (zstd) on the same files with the bad lines removed
  (polars stops at the first malformed line, so it cannot read the files ours reads).

Each side runs ``--repeats`` times (default 3), interleaved, and the fastest run counts (other jobs on the machine
only slow a run down; ``all_seconds`` keeps every run). Reports MB/s (input bytes / wall seconds), the ratio
polars/ours, and each side's largest peak RSS (``ru_maxrss`` of the
subprocess and its children), so RSS at 50 vs 200 MB shows whether memory grows with corpus size.
Writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = 8
WORDS = (
    "the of and to in is for on that with as by this from data model token language text file system user value "
    "Datei öffnen können Einstellungen système fichier données configuración usuario archivo "
    "файл система данные пользователь настройки ファイル システム データ 文件 系统 数据 파일 시스템 데이터 "
    "ملف نظام بيانات फ़ाइल प्रणाली डेटा ফাইল তথ্য கோப்பு தரவு ఫైల్ డేటా"
).split()
BAD = [b"{truncated", b'{"text": 42}', b"[1, 2]", b'{"text": ""}', b'{"text": "bad \xff utf8"}']


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def generate(dirpath: Path, total_mb: int, seed: int = 0) -> tuple[list[Path], list[Path], int]:
    """JSONL files with ~0.1% bad lines and the same files without them; returns (with bad, clean, bad line count)."""
    rng = random.Random(seed)
    paragraphs = [" ".join(rng.choices(WORDS, k=rng.randint(20, 200))) for _ in range(3000)]
    langs = ["en", "de", "fr", "ru", "ja", "zh_CN", "ko", "ar", "hi", "bn"]
    dirty_dir, clean_dir = dirpath / "dirty", dirpath / "clean"
    dirty_dir.mkdir(parents=True)
    clean_dir.mkdir(parents=True)
    per_file, nbad, doc = total_mb * 1_000_000 // FILES, 0, 0
    for f in range(FILES):
        with (
            open(dirty_dir / f"part-{f:02d}.jsonl", "wb") as dirty,
            open(clean_dir / f"part-{f:02d}.jsonl", "wb") as clean,
        ):
            size = 0
            while size < per_file:
                text = f"Document {doc}. " + " ".join(rng.choices(paragraphs, k=rng.randint(1, 6)))
                rec = {
                    "id": f"doc-{doc}",
                    "text": text,
                    "lang": rng.choice(langs),
                    "url": f"https://example.org/{doc}",
                }
                line = json.dumps(rec, ensure_ascii=False).encode() + b"\n"
                dirty.write(line)
                clean.write(line)
                size += len(line)
                doc += 1
                if doc % 1000 == 0:
                    dirty.write(rng.choice(BAD) + b"\n")
                    nbad += 1
    return sorted(dirty_dir.glob("*.jsonl")), sorted(clean_dir.glob("*.jsonl")), nbad


OURS = """
import json, resource, sys, time
import datatrove.executor, pandas  # imported before timing, like polars (pyarrow imports pandas on its first
# list conversion); these one-off import costs are in process_seconds
from curation.ingest.build import CorpusConfig, build
cfg = CorpusConfig.model_validate({"sources": [{"type": "jsonl", "name": "bench", "paths": [sys.argv[1]]}],
                                   "tasks": int(sys.argv[3]), "workers": int(sys.argv[3])})
t = time.perf_counter()
m = build(cfg, sys.argv[2])
dt = time.perf_counter() - t
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"seconds": dt, "peak_rss_mb": rss / 1024, "documents": m["documents"], "records": m["records"]}))
"""

POLARS = """
import json, resource, sys, time
from pathlib import Path
import polars as pl
files = sorted(Path(sys.argv[1]).glob("*.jsonl"))
out = Path(sys.argv[2]); out.mkdir(parents=True)
t = time.perf_counter()
rows = 0
for i, f in enumerate(files):
    df = pl.read_ndjson(f)
    df.write_parquet(out / f"part-{i:02d}.parquet", compression="zstd")
    rows += df.height
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_rss_mb": rss / 1024, "documents": rows}))
"""


def run_child(code: str, *args: str) -> dict:
    env = {**os.environ, "TOKENWISE_DATATROVE_LEVEL": "ERROR", "TOKENWISE_LOG_LEVEL": "WARNING"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_seconds": round(time.perf_counter() - t, 2)}


def _best(runs: list[dict], in_bytes: int) -> dict:
    """The fastest of repeated runs (noise from other jobs only slows a run down); peak RSS is the largest seen."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["mb_per_s"] = round(in_bytes / 1e6 / best["seconds"], 1)
    best["seconds"] = round(best["seconds"], 2)
    best["peak_rss_mb"] = round(max(r["peak_rss_mb"] for r in runs), 1)
    best["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return best


def bench_size(tmp: Path, mb: int, tasks: int, repeats: int = 3) -> dict:
    """Generate one size, run polars then ours on it ``repeats`` times, interleaved; the fastest run of each, MB/s
    over the input bytes."""
    d = tmp / f"{mb}mb"
    dirty, clean, nbad = generate(d, mb)
    in_bytes = sum(p.stat().st_size for p in dirty)
    runs: dict[str, list[dict]] = {"polars": [], "ours": []}
    for _ in range(repeats):
        shutil.rmtree(d / "polars_out", ignore_errors=True)
        shutil.rmtree(d / "run", ignore_errors=True)
        runs["polars"].append(run_child(POLARS, str(d / "clean"), str(d / "polars_out")))
        runs["ours"].append(run_child(OURS, str(d / "dirty"), str(d / "run"), str(tasks)))
    polars, ours = _best(runs["polars"], in_bytes), _best(runs["ours"], in_bytes)
    assert ours["records"]["quarantined"] == nbad, (ours, nbad)
    assert ours["documents"] == polars["documents"], (ours, polars)
    return {"input_mb": round(in_bytes / 1e6, 1), "bad_lines": nbad, "polars": polars, "ours": ours,
            "ratio_polars_over_ours": round(ours["seconds"] / polars["seconds"], 2)}  # fmt: skip


def _line(r: dict) -> str:
    p, o = r["polars"], r["ours"]
    return (f"{r['input_mb']:7.1f} MB  polars {p['mb_per_s']:6.1f} MB/s (RSS {p['peak_rss_mb']:.0f} MB)  "
            f"ours {o['mb_per_s']:6.1f} MB/s (RSS {o['peak_rss_mb']:.0f} MB)  "
            f"ours takes {r['ratio_polars_over_ours']:.2f}x polars' time")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="5 and 20 MB instead of 50 and 200 MB")
    ap.add_argument("--tasks", type=int, default=min(2, os.cpu_count() or 1), help="corpus build tasks=workers")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved; the fastest is reported")
    args = ap.parse_args()
    sizes = (5, 20) if args.small else (50, 200)
    results = {"machine": machine(), "tasks": args.tasks, "repeats": args.repeats, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="tokenwise-ingest-") as tmp:
        for mb in sizes:
            r = bench_size(Path(tmp), mb, args.tasks, args.repeats)
            results["sizes"][f"{mb}MB"] = r
            print(_line(r), flush=True)
    a, b = (results["sizes"][f"{mb}MB"] for mb in sizes)
    extra_mb = b["input_mb"] - a["input_mb"]
    results["marginal_mb_per_s"] = {  # the larger run minus the smaller: fixed start-up costs cancel out
        k: round(extra_mb / max(1e-9, b[k]["seconds"] - a[k]["seconds"]), 1) for k in ("polars", "ours")
    }
    marg = results["marginal_mb_per_s"]
    print(f"marginal (between sizes): polars {marg['polars']} MB/s, ours {marg['ours']} MB/s")
    small, big = (results["sizes"][f"{mb}MB"]["ours"]["peak_rss_mb"] for mb in sizes)
    results["rss_growth_ours"] = round(big / small, 2)
    results["goal"] = "ours within 2x of polars' time; peak RSS independent of corpus size"
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    growth = results["rss_growth_ours"]
    print(f"peak RSS ours {small:.0f} MB -> {big:.0f} MB ({growth}x for {sizes[1] // sizes[0]}x the data)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
