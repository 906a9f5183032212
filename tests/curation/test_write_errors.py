"""Disk full on output, for real: the run directory lives on a tiny tmpfs (``mount -t tmpfs -o size=...``).

Each stage that runs out of space must fail with a clear error (ENOSPC, "No space left on device"), leave no
completion marker, no temp file, and no published output that a later stage would read as complete; once space is
back (``mount -o remount,size=...``) the same command finishes. Skipped with the reason when mounting is refused
(not root, or a sandbox without mount rights).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.decode.tiny import stdlib_texts
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.rundir import atomic_open, write_json


def _mount(path: Path, size: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)  # fmt: skip
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path/fs``; ``resize("64m")`` gives space back."""
    mnt = tmp_path / "fs"
    why = _mount(mnt, "1m") if os.geteuid() == 0 else "not root"
    if why:
        pytest.skip(f"cannot mount a tmpfs to fill up ({why}); disk-full behaviour is not tested here")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    try:
        yield mnt, resize
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> Path:
    """Fill the filesystem until only about ``leave`` bytes are free."""
    filler = mnt / "filler.bin"
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def _docs(n: int, chars: int = 4000) -> list[dict]:
    return [{"id": f"d{i}", "text": t, "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
            for i, t in enumerate(stdlib_texts(n, max_chars=chars))]  # fmt: skip


def test_atomic_write_on_a_full_disk_leaves_nothing(small_fs):
    mnt, _ = small_fs
    target = mnt / "out" / "big.json"
    with pytest.raises(OSError) as e:
        write_json(target, {"blob": "x" * (2 << 20)})
    assert e.value.errno == errno.ENOSPC and "No space left" in str(e.value)
    assert not target.exists() and _leftovers(mnt) == []
    with pytest.raises(OSError), atomic_open(mnt / "out" / "t.parquet", "wb") as f:
        pq.write_table(pa.table({"x": list(range(400_000))}), f, compression="none")
    assert not (mnt / "out" / "t.parquet").exists() and _leftovers(mnt) == []


def test_corpus_build_on_a_full_disk_fails_clearly_then_resumes(small_fs, tmp_path):
    from curation.ingest.build import CorpusConfig, build

    mnt, resize = small_fs
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in _docs(120)))  # ~0.5 MB of text, more with parquet
    cfg = CorpusConfig.model_validate(
        {"sources": [{"type": "jsonl", "name": "s", "paths": [str(data)]}], "tasks": 1, "workers": 1,
         "shard_bytes": 64 << 10}
    )  # fmt: skip
    run = mnt / "run"
    _fill(mnt, 160 << 10)
    with pytest.raises(Exception) as e:
        build(cfg, str(run))
    assert "No space left on device" in str(e.value) or getattr(e.value, "errno", None) == errno.ENOSPC, repr(e.value)
    corpus = run / "corpus"
    assert not (corpus / "_DONE.json").exists() and not (corpus / "manifest.json").exists()
    for shard in corpus.glob("shard-*.parquet"):  # whatever is published must be complete
        pq.read_table(shard)
    assert _leftovers(run) == []
    (mnt / "filler.bin").unlink()
    resize("64m")
    m = build(cfg, str(run))
    assert m["records"] == {"read": 120, "kept": 120, "quarantined": 0}
    assert sum(pq.read_metadata(p).num_rows for p in corpus.glob("shard-*.parquet")) == 120
    assert _leftovers(run) == []


def test_score_on_a_full_disk_publishes_no_partial_signals(small_fs):
    from curation.signals.score import ScoreConfig, score_run

    mnt, resize = small_fs
    run = mnt / "run"
    (run / "corpus").mkdir(parents=True)
    docs = _docs(40, 1500)
    for s in range(4):
        pq.write_table(pa.Table.from_pylist(docs[s * 10 : s * 10 + 10], schema=CORPUS_SCHEMA),
                       run / "corpus" / f"shard-{s:05d}.parquet")  # fmt: skip
    cfg = ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1)
    _fill(mnt, 12 << 10)
    with pytest.raises(Exception) as e:
        score_run(cfg, str(run))
    assert "No space left" in str(e.value) or "not scored" in str(e.value), repr(e.value)
    sig = run / "signals"
    assert not (sig / "_DONE.json").exists() and not (sig / "manifest.json").exists()
    for shard in sig.glob("shard-*.parquet"):
        assert pq.read_table(shard).num_rows == 10, shard  # a published signals shard is whole
    assert _leftovers(sig) == []
    (mnt / "filler.bin").unlink()
    resize("64m")
    totals = score_run(cfg, str(run))
    assert totals["rows_scored"] == 40 and totals["shards"] == 4 and _leftovers(run) == []


def test_tokenizer_save_on_a_full_disk_publishes_nothing(small_fs, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from curation.tokenizer.train import save_tokenizer_dir

    mnt, resize = small_fs
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(stdlib_texts(30), trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|eos|>"]))
    out = mnt / "run" / "tokenizers" / "tk"
    _fill(mnt, 8 << 10)
    with pytest.raises(Exception, match="No space left on device"):  # the Rust writer raises a plain Exception
        save_tokenizer_dir(tok, {"eos_token": "<|eos|>"}, str(out), {"name": "tk"})
    assert not out.exists() and _leftovers(mnt) == []
    (mnt / "filler.bin").unlink()
    resize("64m")
    save_tokenizer_dir(tok, {"eos_token": "<|eos|>"}, str(out), {"name": "tk"})
    assert Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size() == tok.get_vocab_size()
