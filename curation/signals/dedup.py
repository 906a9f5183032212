"""Exact and MinHash near-duplicate detection with bounded memory, following datatrove's four MinHash stages.

Stages (datatrove names in brackets), each resumable and writing under ``<run>/signals/dedup/``:

1. **signatures** [MinhashDedupSignature]: per corpus shard, shingle each document (word n-grams of datatrove's
   ``simplify_text``), MinHash it with ``num_buckets * hashes_per_bucket`` permutations ``(a*h + b) mod (2^61-1)``
   (datatrove's parameters from the same seed), hash each band to one 64-bit key and write one sorted
   ``(key, row)`` file per band per shard. An extra band holds the exact hash of the normalised text.
2. **buckets** [MinhashDedupBuckets]: per band, walk the uint64 key space in ranges; each range gathers the slices
   of every shard's sorted file (``searchsorted``), sorts them and emits the pairs of documents with equal keys.
   Memory is one range (``range_records``), never the corpus.
3. **cluster** [MinhashDedupCluster]: union-find over the duplicate pairs only (memory ∝ duplicated documents).
   The representative of a cluster is its first document in corpus order.
4. **write** [MinhashDedupFilter]: per shard, ``<run>/signals/dedup/shard-NNNNN.parquet`` with ``id,
   dup_exact, dup_exact_cluster_size, dup_cluster_id, dup_cluster_size, dup_is_representative``; decide drops
   ``dup_is_representative == False`` with reason ``dup_not_representative``.

The fast path differs from datatrove only in how it finds words (whitespace split of the simplified text instead of a
per-language spaCy/NLTK tokenizer, ~100x faster) and in combining word hashes into n-gram hashes with vectorised
arithmetic; :func:`datatrove_clusters` runs datatrove's own stages for comparison (tests and bench).
"""

from __future__ import annotations

import functools
import logging
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import regex
import xxhash
from pydantic import Field

from curation import run_files
from curation.executors import PLACEMENT_FIELDS, ExecutorFields, run_pipeline
from tokenwise.config import load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, fs_and_path, hash_obj, write_json

log = logging.getLogger(__name__)

_MERSENNE = np.uint64((1 << 61) - 1)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)
_MARKS = regex.compile(r"\p{Mn}+")
REC_DTYPE = np.dtype([("key", "<u8"), ("row", "<u4")])
DEDUP_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("dup_exact", pa.bool_()),
        pa.field("dup_exact_cluster_size", pa.int32()),
        pa.field("dup_cluster_id", pa.int64()),
        pa.field("dup_cluster_size", pa.int32()),
        pa.field("dup_is_representative", pa.bool_()),
    ]
)


class DedupConfig(ExecutorFields):
    """MinHash near-duplicate settings (datatrove's defaults: 5-grams, 14 bands x 8 hashes, threshold ~0.72)."""

    n_grams: int = Field(5, ge=1, le=32, description="Words per shingle; smaller catches looser matches.")
    num_buckets: int = Field(14, ge=1, le=256, description="LSH bands; more bands raise recall and pairs.")
    hashes_per_bucket: int = Field(8, ge=1, le=64, description="Hashes per band; more lowers false positives.")
    seed: int = Field(1, description="Seed of the permutation parameters (datatrove's default is 1).")
    backend: Literal["numpy", "datatrove"] = Field("numpy", description="Signature path; datatrove is the reference.")
    batch_shingles: int = Field(
        32768, ge=1024, le=1 << 22, description="Shingles hashed at once; RAM ~ 8 x bands x hashes bytes each."
    )
    range_records: int = Field(
        1 << 20, ge=1024, description="Max (key,row) records held in RAM while bucketing; bounds dedup memory."
    )
    exact: bool = Field(True, description="Also mark exact duplicates (hash of normalised text).")
    tasks: int = Field(
        1, ge=1, le=100_000, description="datatrove tasks for the signature stage (shard i -> i % tasks)."
    )
    workers: int = Field(1, ge=1, le=1024, description="Signature processes at once (<= cores); 1 = in-process.")


@dataclass
class DedupResult:
    docs: int
    shards: int
    near_pairs: int
    exact_pairs: int
    clusters: int
    duplicates: int

    def summary(self) -> str:
        return (
            f"{self.docs} docs in {self.shards} shards: {self.clusters} duplicate clusters, "
            f"{self.duplicates} non-representative docs ({self.exact_pairs} exact pairs, {self.near_pairs} near pairs)"
        )


# ---------------------------------------------------------------- hashing


def permutations(num_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datatrove's MinHash permutation parameters ``a, b`` (shape [1, num_hashes]) for a seed."""
    gen = np.random.RandomState(seed)
    a = gen.randint(1, _MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    b = gen.randint(0, _MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    return a, b


def _mix64(x: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: spreads combined hashes over the whole uint64 range
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def normalise_exact(text: str) -> str:
    """Text normalised for exact matching: NFKC, lower case, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_key(text: str) -> int:
    """64-bit xxhash of the normalised text."""
    return xxhash.xxh64_intdigest(normalise_exact(text).encode("utf-8"))


def simplified_words(text: str) -> list[str]:
    """``datatrove.utils.text.simplify_text(text).split()``, computed faster.

    Same steps (lower case, numbers -> 0, punctuation -> space, NFD without combining marks), but the marks are
    removed with one compiled ``\\p{Mn}`` regex instead of a Python loop over every character, and whitespace is
    normalised by ``split``.
    """
    from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION_TRANS  # heavy: deferred until used

    text = NUMBERS_PATTERN.sub("0", text.lower()).translate(PUNCTUATION_TRANS)
    if not text.isascii():
        text = _MARKS.sub("", unicodedata.normalize("NFD", text))
    return text.split()


def shingles(text: str, n_grams: int) -> np.ndarray:
    """Word n-gram hashes (uint64 [N]) of datatrove's simplified text; empty when it has fewer than n words."""
    words = simplified_words(text)
    if len(words) < n_grams:
        return np.empty(0, dtype=np.uint64)
    w = np.fromiter((xxhash.xxh64_intdigest(t) for t in words), dtype=np.uint64, count=len(words))
    m = len(words) - n_grams + 1
    acc = w[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n_grams):
            acc = acc * _NGRAM_MULT + w[k : k + m]
        return _mix64(acc)


def datatrove_shingler(cfg: DedupConfig):
    """datatrove's own shingle function (spaCy/NLTK words of the simplified text, xxhash64 of each n-gram)."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature  # heavy: deferred until used

    mc = MinhashConfig(n_grams=cfg.n_grams, num_buckets=cfg.num_buckets, hashes_per_bucket=cfg.hashes_per_bucket)
    step = MinhashDedupSignature("/tmp", config=mc)
    return lambda text: step.get_shingles(text).reshape(-1)


def minhash_batch(parts: list[np.ndarray], a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """MinHash signatures [len(parts), H] of non-empty shingle arrays, datatrove's ``(a*h+b) mod p`` permutations.

    Bit-identical to datatrove's ``get_signature`` (64-bit). ``y mod (2^61-1)`` is computed with the Mersenne
    identity instead of a division, and shingles are processed in cache-sized chunks (~12x faster than one pass).
    """
    lens = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    s = np.concatenate(parts)[:, None]
    out = np.full((len(parts), a.shape[1]), np.iinfo(np.uint64).max, dtype=np.uint64)
    bufs = tuple(np.empty((min(chunk, len(s)), a.shape[1]), dtype=np.uint64) for _ in range(3))
    for c0 in range(0, len(s), chunk):
        c1 = min(c0 + chunk, len(s))
        phv = _perm_mod(s[c0:c1], a, b, tuple(buf[: c1 - c0] for buf in bufs))  # [c, H]
        first = np.searchsorted(starts, c0, side="right") - 1
        seg = np.concatenate([[c0], starts[(starts > c0) & (starts < c1)]])
        mins = np.minimum.reduceat(phv, seg - c0, axis=0)
        docs = first + np.arange(len(seg))
        out[docs] = np.minimum(out[docs], mins)
    return out


def _perm_mod(s: np.ndarray, a: np.ndarray, b: np.ndarray,
              bufs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    # (s*a + b) wraps mod 2^64 exactly as datatrove's numpy expression does; then y mod p with p = 2^61-1:
    # y = hi*2^61 + lo = hi + lo (mod p), and one conditional subtraction (min(r, r-p) wraps when r < p);
    # ``bufs``: three [len(s), H] arrays reused across chunks (no page faults for fresh temporaries)
    y, r, t = bufs if bufs is not None else (None, None, None)
    with np.errstate(over="ignore"):
        y = np.multiply(s, a, out=y)
        y += b
        r = np.bitwise_and(y, _MERSENNE, out=r)
        y >>= np.uint64(61)
        r += y
        np.minimum(r, np.subtract(r, _MERSENNE, out=t), out=r)
    return r


def band_keys(sigs: np.ndarray, num_buckets: int) -> np.ndarray:
    """One 64-bit key per band: [D, B] from signatures [D, B*R]."""
    d = sigs.shape[0]
    bands = sigs.reshape(d, num_buckets, -1)
    acc = np.zeros((d, num_buckets), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(bands.shape[2]):
            acc = _mix64(acc * _NGRAM_MULT + bands[:, :, r])
    return acc


# ---------------------------------------------------------------- stage 1: signatures


def _iter_texts(shard: str, batch_rows: int = 2048) -> Iterator[tuple[list[str], list[str]]]:
    try:
        with run_files.parquet_file(shard) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "text"]):
                # a null text (the scorer quarantines it as missing_text) hashes like an empty one, no crash
                yield batch.column("id").to_pylist(), [t or "" for t in batch.column("text").to_pylist()]
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{shard}: unreadable corpus shard ({e}); rebuild it with `tokenwise corpus build`") from None


def _shard_signatures(texts: Iterator[str], cfg: DedupConfig) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Band key arrays (rows with shingles only) and exact keys for one shard's texts."""
    a, b = permutations(cfg.num_buckets * cfg.hashes_per_bucket, cfg.seed)
    bands: list[list[np.ndarray]] = [[] for _ in range(cfg.num_buckets)]
    rows: list[np.ndarray] = []
    exact: list[int] = []
    pend, pend_rows, pend_n = [], [], 0

    def flush() -> None:
        nonlocal pend, pend_rows, pend_n
        if pend:
            keys = band_keys(minhash_batch(pend, a, b), cfg.num_buckets)
            for bi in range(cfg.num_buckets):
                bands[bi].append(keys[:, bi])
            rows.append(np.asarray(pend_rows, dtype=np.uint32))
        pend, pend_rows, pend_n = [], [], 0

    shingle = datatrove_shingler(cfg) if cfg.backend == "datatrove" else lambda t: shingles(t, cfg.n_grams)
    n = 0
    for n, text in enumerate(texts, start=1):
        exact.append(exact_key(text))
        sh = shingle(text)
        if sh.size:
            pend.append(sh)
            pend_rows.append(n - 1)
            pend_n += sh.size
            if pend_n >= cfg.batch_shingles:
                flush()
    flush()
    row_arr = np.concatenate(rows) if rows else np.empty(0, np.uint32)
    out = [np.concatenate(k) if k else np.empty(0, np.uint64) for k in bands]
    recs = [_sorted_records(k, row_arr) for k in out]
    return recs, np.asarray(exact, dtype=np.uint64), n


def _sorted_records(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    rec = np.empty(len(keys), dtype=REC_DTYPE)
    rec["key"], rec["row"] = keys, rows
    rec.sort(order=["key", "row"])
    return rec


def _save_npy(path: str, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr)


def _shard_tag(shard: str) -> str:
    """Which shard file a ``.done`` file was computed from (name, size, modification time or checksum): a refreshed
    corpus changes it."""
    name = shard.rsplit("/", 1)[-1]
    fs, p = fs_and_path(shard)
    try:
        info = fs.info(p)
    except OSError:
        return f"{name}:?"
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("created") or ""
    return f"{name}:{info.get('size')}:{getattr(stamp, 'timestamp', lambda: stamp)()}"


def write_signatures(shard: str, index: int, out: str, cfg: DedupConfig) -> int:
    """Stage 1 for one shard; skipped when its ``.done`` file names this same shard file. Returns its doc count."""
    done = f"{out}/sigs/shard-{index:05d}.done"
    if run_files.exists(done):
        n, _, tag = run_files.read_text(done).partition(" ")
        if tag == _shard_tag(shard):
            return int(n)
    recs, exact, n = _shard_signatures((t for _, batch in _iter_texts(shard) for t in batch), cfg)
    for bi, rec in enumerate(recs):
        _save_npy(f"{out}/sigs/band-{bi:03d}/shard-{index:05d}.npy", rec)
    _save_npy(f"{out}/sigs/band-exact/shard-{index:05d}.npy", _sorted_records(exact, np.arange(n, dtype=np.uint32)))
    with atomic_open(done, "w") as f:
        f.write(f"{n} {_shard_tag(shard)}")
    return n


def _signature_task(cfg_dict: dict, shards: list[str], out: str, data, rank: int = 0, world_size: int = 1):
    """datatrove pipeline step: signatures of the shards assigned to ``rank`` (finished shards are skipped)."""
    cfg = DedupConfig.model_validate(cfg_dict)
    for i, shard in enumerate(shards):
        if i % world_size == rank:
            write_signatures(shard, i, out, cfg)
    yield from ()


def _signatures_with_executor(shards: list[str], out: str, cfg: DedupConfig) -> None:
    """Stage 1 through a datatrove executor (``cfg.executor``: local processes, Ray or Slurm)."""
    tasks = min(cfg.tasks, len(shards))
    # no executor overhead (logging dirs, forks) for the common small local case
    if tasks == 1 and cfg.workers == 1 and cfg.executor == "local":
        for i, shard in enumerate(shards):
            write_signatures(shard, i, out, cfg)
        return
    tag = hash_obj({"config": cfg.model_dump(), "shards": [s.rsplit("/", 1)[-1] for s in shards]})
    step = functools.partial(_signature_task, cfg.model_dump(), shards, out)
    run_pipeline([step], cfg, tasks=tasks, workers=cfg.workers, logging_dir=f"{out}/_logs/{tag}", stage="dedup")


# ---------------------------------------------------------------- stage 2: buckets


def band_pairs(files: list[str], offsets: np.ndarray, range_records: int) -> np.ndarray:
    """Duplicate pairs [P, 2] (global doc indices) among sorted per-shard band files, one key range at a time."""
    with run_files.local_npy(files) as maps:
        return _band_pairs(maps, offsets, range_records)


def _band_pairs(maps: list[np.ndarray], offsets: np.ndarray, range_records: int) -> np.ndarray:
    total = sum(len(m) for m in maps)
    n_ranges = max(1, -(-total // range_records))
    edges = [(2**64 * i) // n_ranges for i in range(n_ranges + 1)]
    pairs: list[np.ndarray] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        keys, docs = [], []
        for m, off in zip(maps, offsets, strict=True):
            if not len(m):
                continue
            kcol = m["key"]
            i0 = int(np.searchsorted(kcol, np.uint64(lo))) if lo else 0
            i1 = len(m) if hi >= 2**64 else int(np.searchsorted(kcol, np.uint64(hi)))
            if i1 > i0:
                chunk = np.asarray(m[i0:i1])
                keys.append(chunk["key"])
                docs.append(chunk["row"].astype(np.int64) + off)
        if keys:
            pairs.append(_equal_key_pairs(np.concatenate(keys), np.concatenate(docs)))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)


def _equal_key_pairs(keys: np.ndarray, docs: np.ndarray) -> np.ndarray:
    order = np.lexsort((docs, keys))
    k, d = keys[order], docs[order]
    same = k[1:] == k[:-1]
    return np.stack([d[:-1][same], d[1:][same]], axis=1)


# ---------------------------------------------------------------- stage 3: cluster


def union_find(pairs: np.ndarray) -> dict[int, int]:
    """Map each document in ``pairs`` to its cluster root, the smallest document index of the cluster."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
            parent.setdefault(lo, lo)
    return {x: find(x) for x in list(parent)}


def _root_arrays(roots: dict[int, int]) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    nodes = np.fromiter(roots.keys(), dtype=np.int64, count=len(roots))
    rts = np.fromiter(roots.values(), dtype=np.int64, count=len(roots))
    order = np.argsort(nodes)
    uniq, counts = np.unique(rts, return_counts=True)
    return nodes[order], rts[order], dict(zip(uniq.tolist(), counts.tolist(), strict=True))


def _lookup(nodes: np.ndarray, rts: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Root of each global index ``g`` (itself when not in any pair)."""
    if not len(nodes):
        return g.copy()
    pos = np.clip(np.searchsorted(nodes, g), 0, len(nodes) - 1)
    hit = nodes[pos] == g
    return np.where(hit, rts[pos], g)


# ---------------------------------------------------------------- stage 4: write + driver


def corpus_shards(run: RunDir) -> list[str]:
    """Corpus shard files in order."""
    return run_files.glob(run, "corpus", "shard-*.parquet")


def run_dedup(run_dir: str, cfg: DedupConfig | None = None, shards: list[str] | None = None) -> DedupResult:
    """All four stages over the run's corpus shards; per-shard outputs in ``<run>/signals/dedup/``."""
    cfg = cfg or DedupConfig()
    run = RunDir(run_dir)
    shards = shards if shards is not None else corpus_shards(run)
    if not shards:
        raise FileNotFoundError(
            f"{run.path('corpus')}: no corpus shards (shard-*.parquet); run `tokenwise corpus build`"
        )
    out = run.stage("signals", "dedup")
    _signatures_with_executor(shards, out, cfg)
    counts = [write_signatures(s, i, out, cfg) for i, s in enumerate(shards)]  # all done: reads the .done counts
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    near = [
        band_pairs(
            [f"{out}/sigs/band-{bi:03d}/shard-{i:05d}.npy" for i in range(len(shards))], offsets, cfg.range_records
        )
        for bi in range(cfg.num_buckets)
    ]
    near_pairs = np.unique(np.concatenate(near), axis=0) if near else np.empty((0, 2), np.int64)
    exact_files = [f"{out}/sigs/band-exact/shard-{i:05d}.npy" for i in range(len(shards))]
    exact_pairs = band_pairs(exact_files, offsets, cfg.range_records) if cfg.exact else np.empty((0, 2), np.int64)
    exact_nodes, exact_rts, exact_sizes = _root_arrays(union_find(exact_pairs))
    nodes, rts, sizes = _root_arrays(union_find(np.concatenate([near_pairs, exact_pairs])))
    dups = 0
    for i, shard in enumerate(shards):
        g = offsets[i] + np.arange(counts[i], dtype=np.int64)
        ids = run_files.read_table(shard, columns=["id"]).column("id")
        root, eroot = _lookup(nodes, rts, g), _lookup(exact_nodes, exact_rts, g)
        table = pa.table(
            {
                "id": ids,
                "dup_exact": eroot != g,
                "dup_exact_cluster_size": np.array([exact_sizes.get(r, 1) for r in eroot.tolist()], np.int32),
                "dup_cluster_id": root,
                "dup_cluster_size": np.array([sizes.get(r, 1) for r in root.tolist()], np.int32),
                "dup_is_representative": root == g,
            },
            schema=DEDUP_SCHEMA,
        )
        dups += int((root != g).sum())
        with atomic_open(f"{out}/shard-{i:05d}.parquet", "wb") as f:
            pq.write_table(table, f)
    for p in run_files.glob(run, "signals", "dedup", "shard-*.parquet"):  # shards a refreshed corpus no longer has
        num = p.rsplit("/", 1)[-1].removesuffix(".parquet").removeprefix("shard-")
        if num.isdigit() and int(num) >= len(shards):
            run_files.remove(p)
    res = DedupResult(int(sum(counts)), len(shards), len(near_pairs), len(exact_pairs), len(sizes), dups)
    write_json(f"{out}/summary.json", {**res.__dict__, "config": cfg.model_dump()})
    log.info("dedup done " + kv(**res.__dict__))
    return res


def clusters_from_dedup(run_dir: str) -> list[set[str]]:
    """Clusters of size > 1 as sets of document ids, read back from ``<run>/signals/dedup``."""
    files = run_files.glob(RunDir(run_dir), "signals", "dedup", "shard-*.parquet")
    t = pa.concat_tables([run_files.read_table(f) for f in files])
    groups: dict[int, set[str]] = {}
    for doc_id, cid, size in zip(
        *(t.column(c).to_pylist() for c in ("id", "dup_cluster_id", "dup_cluster_size")), strict=True
    ):
        if size > 1:
            groups.setdefault(cid, set()).add(doc_id)
    return sorted(groups.values(), key=lambda s: sorted(s))


# ---------------------------------------------------------------- reference: datatrove's own stages


def datatrove_clusters(texts: list[str], ids: list[str], workdir: str, cfg: DedupConfig | None = None) -> list[set]:
    """Run datatrove's four MinHash stages in-process on ``texts``; return its clusters (size > 1) as id sets."""
    from datatrove.data import Document as DTDocument  # heavy: deferred until used
    from datatrove.pipeline.dedup.minhash import (  # heavy: deferred until used
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )

    cfg = cfg or DedupConfig()
    mc = MinhashConfig(
        n_grams=cfg.n_grams, num_buckets=cfg.num_buckets, hashes_per_bucket=cfg.hashes_per_bucket, seed=cfg.seed
    )
    docs = (DTDocument(text=t, id=i) for t, i in zip(texts, ids, strict=True))
    MinhashDedupSignature(f"{workdir}/sigs", config=mc).run(docs, rank=0, world_size=1)
    for bi in range(cfg.num_buckets):
        MinhashDedupBuckets(f"{workdir}/sigs", f"{workdir}/buckets", config=mc).run(
            None, rank=bi, world_size=cfg.num_buckets
        )
    MinhashDedupCluster(f"{workdir}/buckets", f"{workdir}/clusters", config=mc, save_cluster_id=True).run()
    path = f"{workdir}/clusters/000000.clusters"
    if not os.path.exists(path):
        return []
    arr = np.fromfile(path, dtype="<u4").reshape(-1, 2)
    groups: dict[int, set[str]] = {}
    for doc, cid in arr.tolist():
        groups.setdefault(cid, set()).add(ids[doc])
    return sorted(groups.values(), key=lambda s: sorted(s))


def dedup_inputs_hash(run: RunDir, cfg: DedupConfig) -> str:
    """Hash of the config and the corpus shards' names and sizes (for the stage marker)."""
    files = [(s.rsplit("/", 1)[-1], run_files.size(s)) for s in corpus_shards(run)]
    return hash_obj({"config": cfg.model_dump(exclude=PLACEMENT_FIELDS), "shards": files})


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``dedup``: exact + MinHash duplicates of the corpus; skipped when its marker matches."""
    cfg = load_section(config_path, "dedup", DedupConfig)
    run = RunDir(run_dir)
    inputs = dedup_inputs_hash(run, cfg)
    if run.is_done("signals/dedup", inputs):
        return "up to date: " + DedupResult(**run.marker("signals/dedup")["summary"]).summary()
    res = run_dedup(run_dir, cfg)
    run.mark_done("signals/dedup", inputs, res.__dict__)
    return res.summary()
