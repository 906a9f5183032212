"""Dedup benchmark: MB/s of datatrove's four MinHash stages vs ours on the same text; peak RSS over corpus sizes.

Run: ``.venv/bin/python bench/dedup.py [--small]``; writes ``bench/results/dedup.json``. Text is real: Python source
files found on the machine (stdlib, then installed packages), cut into ~4 KB documents at line boundaries, with 2% of
documents planted again as near-duplicates (one word in 400 replaced). Peak RSS is measured in a fresh subprocess per
corpus size (``ru_maxrss``), beside the RSS after imports, so "flat in corpus size" is visible directly.
``bench/curate.py`` can import :func:`bench_dedup`.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "dedup.json"
sys.path.insert(0, str(ROOT))


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def source_files() -> list[Path]:
    """Python files of the stdlib and site-packages, in a stable order."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    return [p for r in roots for p in sorted(r.rglob("*.py"))]


def make_docs(target_bytes: int, seed: int = 0, doc_bytes: int = 4096, dup_rate: float = 0.02) -> list[dict]:
    """~target_bytes of real documents plus planted near-duplicates."""
    rng = random.Random(seed)
    docs, total = [], 0
    for path in source_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for i, chunk in enumerate(_chunks(text, doc_bytes)):
            docs.append({"id": f"{path}:{i}", "text": chunk, "source": "bench", "lang": "en", "domain": "code",
                         "unit_id": None})  # fmt: skip
            total += len(chunk.encode())
            if total >= target_bytes:
                return docs + _plant(docs, dup_rate, rng)
    return docs + _plant(docs, dup_rate, rng)


def _chunks(text: str, size: int) -> list[str]:
    out, cur, n = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(cur))
            cur, n = [], 0
    if cur and n > 200:
        out.append("".join(cur))
    return out


def _plant(docs: list[dict], rate: float, rng: random.Random) -> list[dict]:
    out = []
    for d in rng.sample(docs, int(len(docs) * rate)):
        words = d["text"].split(" ")
        for _ in range(max(1, len(words) // 400)):
            words[rng.randrange(len(words))] = "PLANTED"
        out.append(dict(d, id=d["id"] + ":near", text=" ".join(words)))
    return out


def write_docs(run: Path, docs: list[dict], shard_docs: int = 2000) -> float:
    """Corpus shards; returns MB of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenwise.documents import CORPUS_SCHEMA

    (run / "corpus").mkdir(parents=True, exist_ok=True)
    for i in range(0, len(docs), shard_docs):
        t = pa.Table.from_pylist(docs[i : i + shard_docs], schema=CORPUS_SCHEMA)
        pq.write_table(t, run / "corpus" / f"shard-{i // shard_docs:05d}.parquet")
    return sum(len(d["text"].encode()) for d in docs) / 1e6


_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from curation.signals.dedup import DedupConfig, run_dedup
def hwm():  # peak RSS of this process (VmHWM resets at exec; ru_maxrss would inherit the parent's)
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024
rss0 = hwm()
t0, c0 = time.perf_counter(), time.process_time()
res = run_dedup({run!r}, DedupConfig(range_records={range_records}))
print(json.dumps({{"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                  "rss_after_imports_mb": rss0, "peak_rss_mb": hwm(), **res.__dict__}}))
"""


def rss_run(run: Path, range_records: int = 1 << 18) -> dict:
    """Our dedup in a fresh interpreter; its peak RSS and timing."""
    code = _CHILD.format(root=str(ROOT), run=str(run), range_records=range_records)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_compare(docs: list[dict], work: Path) -> dict:
    """datatrove's 4 stages vs ours on the same documents; MB/s and whether the clusters agree."""
    from curation.signals.dedup import DedupConfig, clusters_from_dedup, datatrove_clusters, run_dedup

    write_docs(work / "warm", docs[:20])  # one-time costs (imports, regex/spaCy loading) out of both timings
    run_dedup(str(work / "warm"), DedupConfig(exact=False))
    datatrove_clusters([d["text"] for d in docs[:20]], [d["id"] for d in docs[:20]], str(work / "warm_dt"))
    mb = write_docs(work / "ours", docs)
    t0, c0 = time.perf_counter(), time.process_time()
    run_dedup(str(work / "ours"), DedupConfig(exact=False))
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    theirs = datatrove_clusters([d["text"] for d in docs], [d["id"] for d in docs], str(work / "dt"))
    dt_s, dt_cpu = time.perf_counter() - t0, time.process_time() - c0
    ours = clusters_from_dedup(str(work / "ours"))
    return {
        "mb": mb, "docs": len(docs), "datatrove_seconds": dt_s, "ours_seconds": ours_s,
        "datatrove_mb_s": mb / dt_s, "ours_mb_s": mb / ours_s, "speedup": dt_s / ours_s,
        "datatrove_cpu_mb_s": mb / dt_cpu, "ours_cpu_mb_s": mb / ours_cpu, "speedup_cpu": dt_cpu / ours_cpu,
        "clusters_ours": len(ours), "clusters_datatrove": len(theirs), "clusters_identical": ours == theirs,
    }  # fmt: skip


def bench_dedup(small: bool = False) -> dict:
    """The whole benchmark; returns (and writes) the result dict."""
    import logging

    logging.getLogger("tokenwise").setLevel(logging.WARNING)
    from loguru import logger

    logger.remove()  # datatrove's per-step logging would dominate the output
    speed_mb, sizes = (0.3, (2, 8)) if small else (3.0, (8, 32, 64))  # 3 MB: per-run fixed costs amortised
    res: dict = {"machine": machine(), "small": small}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res["speed"] = speed_compare(make_docs(int(speed_mb * 1e6), seed=1), work / "speed")
        res["rss"] = []
        for mb in sizes:
            run = work / f"rss{mb}"
            corpus_mb = write_docs(run, make_docs(int(mb * 1e6)))
            res["rss"].append({"corpus_mb": corpus_mb, **rss_run(run)})
    r0, r1 = res["rss"][0], res["rss"][-1]
    res["rss_growth_mb"] = r1["peak_rss_mb"] - r0["peak_rss_mb"]
    res["corpus_growth"] = r1["corpus_mb"] / r0["corpus_mb"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="Smaller corpora (CI-sized).")
    res = bench_dedup(ap.parse_args().small)
    s = res["speed"]
    print(f"machine: {res['machine']['cpu']} x{res['machine']['cores']}")
    print(f"MinHash, all stages, {s['mb']:.2f} MB ({s['docs']} docs), per CPU-second: datatrove "
          f"{s['datatrove_cpu_mb_s']:.2f} MB/s, ours {s['ours_cpu_mb_s']:.2f} MB/s -> {s['speedup_cpu']:.1f}x "
          f"(wall: {s['speedup']:.1f}x); clusters identical: {s['clusters_identical']} "
          f"({s['clusters_ours']} vs {s['clusters_datatrove']})")  # fmt: skip
    for r in res["rss"]:
        print(f"dedup {r['corpus_mb']:.1f} MB / {r['docs']} docs: peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(after imports {r['rss_after_imports_mb']:.0f} MB), {r['corpus_mb'] / r['cpu_seconds']:.2f} MB/s/CPU, "
              f"{r['clusters']} clusters")  # fmt: skip
    print(f"corpus x{res['corpus_growth']:.1f} -> peak RSS +{res['rss_growth_mb']:.0f} MB; wrote {OUT}")


if __name__ == "__main__":
    main()
