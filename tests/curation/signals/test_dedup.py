"""Dedup on real stdlib text with planted near-duplicates, compared against datatrove's own MinHash stages."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus

from curation.signals.dedup import DedupConfig, band_pairs, clusters_from_dedup, datatrove_clusters, run_dedup

MODULES = ("textwrap.py", "shlex.py", "bisect.py", "glob.py", "csv.py", "heapq.py", "tarfile.py", "zipfile.py")


def _plant(docs: list[dict], every: int = 400, seed: int = 0) -> list[dict]:
    """Near-duplicates: each document again with one word in ``every`` replaced."""
    rng = random.Random(seed)
    out = []
    for d in docs:
        words = d["text"].split(" ")
        for _ in range(max(1, len(words) // every)):
            words[rng.randrange(len(words))] = "PLANTED"
        out.append(dict(d, id=d["id"] + ":near", text=" ".join(words)))
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = stdlib_docs(MODULES)
    near = _plant(base[:5])
    docs = base + parallel_docs(limit=20) + near
    run = tmp_path_factory.mktemp("dedup")
    write_corpus(run, docs, shard_size=40)
    res = run_dedup(str(run), DedupConfig(exact=False, range_records=1024))
    return run, docs, res


def test_finds_planted_near_duplicates_and_not_distinct_docs(planted):
    run, docs, _ = planted
    clusters = clusters_from_dedup(str(run))
    stdlib_clusters = [c for c in clusters if any(i.startswith("stdlib:") for i in c)]
    expected = [{f"stdlib:{m}", f"stdlib:{m}:near"} for m in MODULES[:5]]
    assert sorted(stdlib_clusters, key=sorted) == sorted(expected, key=sorted)


def test_representative_is_first_and_sizes(planted):
    run, _, res = planted
    t = pq.read_table(run / "signals/dedup/shard-00000.parquet").to_pylist()
    first = {r["id"]: r for r in t}
    assert first["stdlib:textwrap.py"]["dup_is_representative"] is True
    assert first["stdlib:textwrap.py"]["dup_cluster_size"] == 2
    assert first["stdlib:tarfile.py"]["dup_cluster_size"] == 1
    rows = [r for f in sorted((run / "signals/dedup").glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == res.docs
    assert sum(not r["dup_is_representative"] for r in rows) == res.duplicates


def test_clusters_match_datatrove(planted, tmp_path):
    run, docs, _ = planted
    ours = clusters_from_dedup(str(run))
    theirs = datatrove_clusters([d["text"] for d in docs], [d["id"] for d in docs], str(tmp_path))
    assert ours == theirs
    assert len(theirs) >= 5


def test_exact_duplicates_of_short_texts(tmp_path):
    docs = parallel_docs(limit=10)
    docs.append(dict(docs[3], id="copy-of-3", text="  " + docs[3]["text"].upper() + "\n"))
    write_corpus(tmp_path, docs, shard_size=25)
    run_dedup(str(tmp_path))
    rows = {
        r["id"]: r
        for f in sorted((tmp_path / "signals/dedup").glob("shard-*.parquet"))
        for r in pq.read_table(f).to_pylist()
    }
    assert rows["copy-of-3"]["dup_exact"] is True
    assert rows["copy-of-3"]["dup_is_representative"] is False
    assert rows[docs[3]["id"]]["dup_is_representative"] is True
    assert rows["copy-of-3"]["dup_cluster_id"] == rows[docs[3]["id"]]["dup_cluster_id"]


def test_band_pairs_ranges_equal_one_pass(tmp_path):
    rng = np.random.default_rng(0)
    files, offsets = [], np.array([0, 500, 1000])
    for i in range(3):
        rec = np.empty(500, dtype=[("key", "<u8"), ("row", "<u4")])
        rec["key"] = rng.integers(0, 50, 500, dtype=np.uint64) * np.uint64(2**58)
        rec["row"] = np.arange(500)
        rec.sort(order=["key", "row"])
        np.save(tmp_path / f"{i}.npy", rec)
        files.append(str(tmp_path / f"{i}.npy"))
    small = band_pairs(files, offsets, range_records=1024)
    big = band_pairs(files, offsets, range_records=1 << 20)
    assert {tuple(p) for p in small.tolist()} == {tuple(p) for p in big.tolist()}
    assert len(big) == 1500 - len(np.unique(np.concatenate([np.load(f)["key"] for f in files])))


def test_resume_skips_finished_signatures(tmp_path):
    write_corpus(tmp_path, stdlib_docs(MODULES[:3]), shard_size=2)
    run_dedup(str(tmp_path))
    sig = tmp_path / "signals/dedup/sigs/band-000/shard-00000.npy"
    mtime = sig.stat().st_mtime_ns
    run_dedup(str(tmp_path))
    assert sig.stat().st_mtime_ns == mtime


def test_datatrove_backend_gives_same_clusters(planted, tmp_path):
    run, _, _ = planted
    (tmp_path / "corpus").mkdir()
    for f in (run / "corpus").glob("shard-*.parquet"):
        (tmp_path / "corpus" / f.name).write_bytes(f.read_bytes())
    run_dedup(str(tmp_path), DedupConfig(exact=False, backend="datatrove"))
    assert clusters_from_dedup(str(tmp_path)) == clusters_from_dedup(str(run))


def test_signatures_bit_identical_to_datatrove():
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    from curation.signals.dedup import minhash_batch, permutations

    step = MinhashDedupSignature("/tmp/unused", config=MinhashConfig())
    parts = [step.get_shingles(d["text"]).reshape(-1) for d in stdlib_docs(MODULES[:4])]
    parts.append(np.array([7], dtype=np.uint64))  # a one-shingle document inside a chunk
    ref = np.array([sum(step.get_signature(p.reshape(-1, 1)), []) for p in parts], dtype=np.uint64)
    a, b = permutations(112, 1)
    assert (minhash_batch(parts, a, b, chunk=1000) == ref).all()  # chunks split documents


def test_simplified_words_equal_datatrove_simplify_text():
    from datatrove.utils.text import simplify_text

    from curation.signals.dedup import simplified_words

    docs = stdlib_docs(MODULES[:3]) + parallel_docs(limit=80, langs=("de", "fr", "ru", "ja", "hi", "ta"))
    docs.append({"text": "Café  naïve 3,5 ١٢٣ déjà-vu\tÅngström  ｆｕｌｌ"})
    for d in docs:
        assert simplified_words(d["text"]) == simplify_text(d["text"]).split(), d["text"][:80]


def test_signatures_through_datatrove_executor_match_in_process(planted, tmp_path):
    run, _, _ = planted
    (tmp_path / "corpus").mkdir()
    for f in (run / "corpus").glob("shard-*.parquet"):
        (tmp_path / "corpus" / f.name).write_bytes(f.read_bytes())
    run_dedup(str(tmp_path), DedupConfig(exact=False, range_records=1024, tasks=3, workers=2))
    assert clusters_from_dedup(str(tmp_path)) == clusters_from_dedup(str(run))
    assert len(list((tmp_path / "signals/dedup/sigs").glob("shard-*.done"))) == len(list(run.glob("corpus/*.parquet")))
