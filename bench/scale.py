"""Scale-out: throughput at 1 and 2 workers (local executor, and Ray at 2), and a projection for 1 TB on N nodes.

Run: ``.venv/bin/python bench/scale.py [--small]``; writes ``bench/results/scale.json``.

Measured here, on one input corpus of real text (stdlib/site-packages source cut into ~4 KB documents, as
``bench/dedup.py`` makes it) written as JSONL:

- ``corpus build`` (JSONL -> Parquet shards), ``token counts`` (cl100k per shard), ``signals`` (``curate score``, full
  signal set, on a smaller slice because it is ~10x a tokenizer pass) and ``dedup signatures`` — each at workers=1
  and workers=2 with the local executor, then at workers=2 on an in-process Ray instance (``ray.init(num_cpus=2)``);
- per-core rate = MB / CPU-seconds of the process tree (local runs), so numbers hold on a shared machine;
- the dedup split: signatures (parallel over shards, scales with nodes) vs buckets + clustering (one process in
  ``curation.signals.dedup.run_dedup``), timed separately.

The projection multiplies the measured per-core rates out to a 1 TB corpus on N nodes of C cores (assumed linear in
cores: the ranks share nothing but the file system), adds the serial dedup stage at its measured rate, and uses the
dedup memory model (``bench/results/dedup.json``: peak RSS flat in corpus size; signatures (bands+1) x 16 bytes per
document on disk). Published figures it is compared against are quoted in ``PUBLISHED`` with their source.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dedup import machine, make_docs  # noqa: E402  (bench/dedup.py: the same real-text corpus maker)

MB = 1e6
PUBLISHED = [
    {
        "source": "https://developer.nvidia.com/blog/curating-trillion-token-datasets-introducing-nemo-data-curator/",
        "what": "NeMo Data Curator modules (download, extraction, filtering, exact/fuzzy dedup) 'offer linear "
        "scaling to more than 1000 CPU cores'; GPU fuzzy dedup reported '20 times faster and 5 times "
        "cheaper' than CPU (the "
        "20x/5x as quoted by the engineering.fyi summary of that post; the post's own table was not retrievable)",
        "numbers": {"linear_scaling_cpu_cores": 1000, "gpu_fuzzy_dedup_speedup_vs_cpu": 20, "gpu_cost_ratio": 5},
    },
    {
        "source": "https://github.com/huggingface/datatrove/blob/main/examples/fineweb.py",
        "what": "datatrove's FineWeb recipe, per Common Crawl dump, as Slurm job limits (not measured times): base "
        "processing 8000 tasks x 10 h limit x 2 GB/CPU; MinHash signatures 1000 tasks x 5 h; buckets 14x50 "
        "tasks x 3 CPUs x 4 GB/CPU; clustering ONE task x 8 CPUs x 25 GB/CPU (200 GB) x 30 h limit ('if you "
        "dedup a full dump, you do need a lot of memory for this one')",
        "numbers": {
            "base_tasks": 8000,
            "signature_tasks": 1000,
            "bucket_tasks": 700,
            "cluster_tasks": 1,
            "cluster_memory_gb": 200,
        },
    },  # fmt: skip
    {
        "source": "search of docs/pages/issues for a published datatrove throughput (MB/s per core)",
        "what": "none found; datatrove's per-core rates below are measured on this machine by bench/dedup.py "
        "(MinHash) and bench/curate.py (Gopher/C4/FineWeb filters) instead",
        "numbers": {},
    },
]


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (local executor forks)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(fn) -> tuple[object, float, float]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def write_jsonl(docs: list[dict], folder: Path, files: int = 8) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with open(folder / f"part-{f:02d}.jsonl", "w") as out:
            for d in docs[f::files]:
                out.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
    return sum(p.stat().st_size for p in folder.glob("*.jsonl")) / MB


def corpus_cfg(data: Path, workers: int, executor: str):
    from curation.ingest.build import CorpusConfig

    return CorpusConfig.model_validate({"sources": [{"type": "jsonl", "name": "bench", "paths": [str(data)],
                                                    "domain": "code"}], "tasks": 8, "workers": workers,
                                        "executor": executor, "shard_bytes": 4 << 20, "time_limit": 3600,
                                        "start_method": "forkserver"})  # fmt: skip


def run_stage(stage: str, data: Path, mb: float, tmp: Path, workers: int, executor: str) -> dict:
    """One stage at one placement on a fresh run directory; returns seconds, CPU seconds and MB/s."""
    from curation.ingest.build import build
    from curation.plans.token_counts import TokenCountConfig, count_tokens
    from curation.signals.dedup import DedupConfig, _signatures_with_executor, corpus_shards, run_dedup
    from curation.signals.score import ScoreConfig, score_run
    from tokenwise.rundir import RunDir

    run = tmp / f"{stage}-{executor}-{workers}"
    shutil.rmtree(run, ignore_errors=True)
    if stage != "corpus build":
        shutil.copytree(data, run / "corpus")
    place = {"executor": executor, "workers": workers, "tasks": 8}
    if stage == "corpus build":
        fn = lambda: build(corpus_cfg(data, workers, executor), str(run))  # noqa: E731
    elif stage == "token counts":
        fn = lambda: count_tokens(TokenCountConfig(source="corpus", **place), str(run))  # noqa: E731
    elif stage == "signals":
        fn = lambda: score_run(ScoreConfig(tokenizers=["tiktoken:cl100k_base"], **place), str(run))  # noqa: E731
    elif stage == "dedup signatures":
        cfg = DedupConfig(**place)
        out = RunDir(str(run)).stage("signals", "dedup")
        os.makedirs(out, exist_ok=True)
        fn = lambda: _signatures_with_executor(corpus_shards(RunDir(str(run))), out, cfg)  # noqa: E731
    else:  # dedup buckets+clusters: signatures first (untimed), then the serial rest
        cfg = DedupConfig(**place)
        run_dedup(str(run), cfg)  # warm: signatures written
        fn = lambda: run_dedup(str(run), cfg)  # noqa: E731
    _, wall, cpu = timed(fn)
    row = {"stage": stage, "executor": executor, "workers": workers, "mb": round(mb, 2), "seconds": round(wall, 2),
           "mb_s": round(mb / wall, 3)}  # fmt: skip
    # workers=1 runs in this process; forkserver children and Ray workers are not our reaped children, so their CPU
    # time is not in RUSAGE_CHILDREN: per-core rates come from workers=1 only
    if executor == "local" and workers == 1:
        row |= {"cpu_seconds": round(cpu, 2), "mb_per_cpu_s": round(mb / max(cpu, 1e-9), 3)}
    print(json.dumps(row), flush=True)
    return row


def measure(small: bool, tmp: Path) -> tuple[list[dict], dict]:
    import ray

    big_mb, score_mb = (6, 1) if small else (24, 3)
    docs = make_docs(int(big_mb * MB), dup_rate=0.02)
    data = tmp / "jsonl"
    input_mb = write_jsonl(docs, data)
    from curation.ingest.build import build

    build(corpus_cfg(data, 2, "local"), str(tmp / "ref"))  # the corpus the later stages read
    corpus = tmp / "ref" / "corpus"
    corpus_mb = sum(len(d["text"].encode()) for d in docs) / MB
    score_docs = docs[: max(1, int(len(docs) * score_mb / big_mb))]
    write_jsonl(score_docs, tmp / "jsonl-s")
    build(corpus_cfg(tmp / "jsonl-s", 2, "local"), str(tmp / "ref-s"))
    score_corpus, score_text_mb = tmp / "ref-s" / "corpus", sum(len(d["text"].encode()) for d in score_docs) / MB
    plan = [
        ("corpus build", data, input_mb),
        ("token counts", corpus, corpus_mb),
        ("signals", score_corpus, score_text_mb),
        ("dedup signatures", corpus, corpus_mb),
        ("dedup buckets+clusters", corpus, corpus_mb),
    ]
    rows = []
    for stage, src, mb in plan:
        for w in (1, 2):
            rows.append(run_stage(stage, src, mb, tmp, w, "local"))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = round(time.perf_counter() - t0, 2)
    try:
        for stage, src, mb in plan[:4]:
            rows.append(run_stage(stage, src, mb, tmp, 2, "ray"))
    finally:
        ray.shutdown()
    info = {"input_jsonl_mb": round(input_mb, 2), "corpus_text_mb": round(corpus_mb, 2), "docs": len(docs),
            "avg_doc_bytes": round(corpus_mb * MB / len(docs)), "ray_init_seconds": ray_start}  # fmt: skip
    return rows, info


def rate(rows: list[dict], stage: str) -> float:
    """Per-core MB/s: MB per CPU-second of the in-process (workers=1) run."""
    return max(r["mb_per_cpu_s"] for r in rows if r["stage"] == stage and r["workers"] == 1 and "mb_per_cpu_s" in r)


def projection(rows: list[dict], info: dict, dedup_bench: dict, tb: float = 1.0, cores: int = 32) -> dict:
    """Hours and memory per node for ``tb`` TB on N nodes of ``cores`` cores (linear in cores; serial dedup rest)."""
    total_mb = tb * 1e6
    parallel = {s: rate(rows, s) for s in ("corpus build", "token counts", "signals", "dedup signatures")}
    serial_rate = max(r["mb_s"] for r in rows if r["stage"] == "dedup buckets+clusters")
    docs = total_mb * MB / info["avg_doc_bytes"]
    bands = 14 + 1  # DedupConfig default num_buckets + the exact band
    sig_disk_gb = docs * bands * 16 / 1e9  # (key u64, row u64) per band per document
    rss_mb = max(r["peak_rss_mb"] for r in dedup_bench.get("rss", [])) if dedup_bench.get("rss") else None
    out = []
    for nodes in (1, 4, 16, 64):
        c = nodes * cores
        hours = {s: round(total_mb / (r * c) / 3600, 2) for s, r in parallel.items()}
        hours["dedup buckets+clusters (1 process)"] = round(total_mb / serial_rate / 3600, 2)
        slowest = max(hours, key=hours.get)
        out.append({"nodes": nodes, "cores": c, "hours": hours, "total_hours": round(sum(hours.values()), 2),
                    "bottleneck": slowest, "memory_per_node_gb": round(cores * (rss_mb or 0) / 1024, 1)})  # fmt: skip
    return {
        "assumptions": {
            "tb": tb,
            "cores_per_node": cores,
            "avg_doc_bytes": info["avg_doc_bytes"],
            "per_core_mb_s": parallel,
            "serial_dedup_mb_s": serial_rate,
            "dedup_peak_rss_mb_per_process": rss_mb,
            "linear_in_cores": True,
        },  # fmt: skip
        "docs": int(docs),
        "dedup_signatures_on_disk_gb": round(sig_disk_gb, 1),
        "dedup_serial_stage_memory": "range_records x 16 B per key range (16 MiB at the default 1<<20) plus a "
        "union-find dict over duplicate pairs only; the signature files stream from shared storage",
        "nodes": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="6 MB corpus (CI-sized) instead of 24 MB")
    ap.add_argument("--reproject", action="store_true", help="recompute the projection from the saved runs")
    args = ap.parse_args()
    os.environ.setdefault("TOKENWISE_LOG_LEVEL", "WARNING")
    if args.reproject:
        saved = json.loads((ROOT / "bench" / "results" / "scale.json").read_text())
        rows = [{k: v for k, v in r.items() if r["workers"] == 1 or "cpu" not in k} for r in saved["runs"]]
        info, args.small = saved["input"], saved["small"]
    else:
        tmp = Path(tempfile.mkdtemp(prefix="tokenwise-scale-"))
        try:
            rows, info = measure(args.small, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    dedup_path = ROOT / "bench" / "results" / "dedup.json"
    dedup_bench = json.loads(dedup_path.read_text()) if dedup_path.exists() else {}
    proj = projection(rows, info, dedup_bench)
    speedups = {}
    for stage in sorted({r["stage"] for r in rows}):
        by = {(r["executor"], r["workers"]): r["seconds"] for r in rows if r["stage"] == stage}
        speedups[stage] = {"local_2_over_1": round(by[("local", 1)] / by[("local", 2)], 2)}
        if ("ray", 2) in by:
            speedups[stage]["ray2_over_local2_time"] = round(by[("ray", 2)] / by[("local", 2)], 2)
    result = {"machine": {**machine(), "load_avg": os.getloadavg()}, "small": args.small, "input": info,
              "runs": rows, "speedups": speedups, "projection_1tb": proj, "published": PUBLISHED}  # fmt: skip
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"speedups": speedups, "per_core": proj["assumptions"]["per_core_mb_s"]}, indent=1))
    for n in proj["nodes"]:
        print(f"1 TB on {n['nodes']:>2} x {proj['assumptions']['cores_per_node']} cores: {n['total_hours']:>7} h, "
              f"bottleneck {n['bottleneck']}, ~{n['memory_per_node_gb']} GB/node")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
