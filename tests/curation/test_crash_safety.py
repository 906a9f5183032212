"""kill -9 a curation (score) run and a tokenizer-training run at random points, rerun, compare with a clean run.

Each seed picks a kill point from the run's own progress (after k outputs were published, plus a random delay), so
kills land during start-up, mid-shard, between outputs and during the final writes. After the kill every published
output must already be complete (readable and equal to the clean run's); after the rerun the outputs must equal the
clean run's exactly, with no temp file or directory left and no duplicate shard. Bounded: few seeds, and every wait
has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from _paths import REPO

from serving.decode.tiny import stdlib_texts
from tokenwise.documents import CORPUS_SCHEMA

ROOT = REPO
TOKENWISE = [sys.executable, "-c", "from tokenwise.cli import main; main()"]
SEEDS = (0, 1, 2)
SCORE_SEEDS = (0, 1)  # each score seed costs two process start-ups (LID, datatrove); kill points vary by k too
ENV = {**os.environ, "TOKENWISE_DATATROVE_LEVEL": "ERROR", "TOKENWISE_LOG_LEVEL": "WARNING"}
SCORE = {"tokenizers": ["tiktoken:cl100k_base"], "run_tokenizers": False, "tasks": 1, "workers": 1, "batch_size": 8}
TOKENIZERS = {
    "source": "corpus",
    "train": [
        {"name": "tka", "vocab_size": 700},
        {"name": "tkb", "vocab_size": 900, "pre_tokenization": "gpt2_byte_level"},
        {"name": "tkc", "vocab_size": 800, "pre_tokenization": "line_byte_level"},
    ],
}  # fmt: skip


def _corpus(run: Path, shards: int = 5, per_shard: int = 10) -> None:
    texts = stdlib_texts(shards * per_shard, max_chars=1200)
    (run / "corpus").mkdir(parents=True)
    for s in range(shards):
        rows = [{"id": f"d{s}-{i}", "text": t, "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
                for i, t in enumerate(texts[s * per_shard : (s + 1) * per_shard])]  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), run / "corpus" / f"shard-{s:05d}.parquet")


def _copy_corpus(src: Path, dst: Path) -> None:
    (dst / "corpus").mkdir(parents=True)
    for p in (src / "corpus").glob("shard-*.parquet"):
        (dst / "corpus" / p.name).write_bytes(p.read_bytes())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A corpus, a config and the clean (uninterrupted) outputs of both stages."""
    from curation.signals.score import ScoreConfig, score_run
    from curation.tokenizer.config import TokenizerSection
    from curation.tokenizer.train import train_all

    root = tmp_path_factory.mktemp("crash")
    clean = root / "clean"
    _corpus(clean)
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"score": SCORE, "tokenizer": TOKENIZERS}, sort_keys=False))
    score_run(ScoreConfig.model_validate(SCORE), str(clean))
    train_all(TokenizerSection.model_validate(TOKENIZERS), str(clean))
    return root, cfg, clean


def _kill_when(cmd: list[str], ready, delay: float, deadline_s: float = 90) -> bool:
    """Start ``cmd``; SIGKILL it ``delay`` seconds after ``ready()`` holds. True when it was killed, not finished.

    Only the leader is killed (a crash of the driver); its worker processes, orphaned, are killed afterwards through
    the process group so they do not outlive the test.
    """
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    end = time.time() + deadline_s
    while time.time() < end and proc.poll() is None and not ready():
        time.sleep(0.01)
    time.sleep(delay)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return killed


def _kill_somewhere(make_run, cmd_for, ready_for, k: int, delay: float) -> Path:
    """Kill at (k outputs published + delay); when the run was faster than that, retry earlier (bounded)."""
    for attempt in range(4):
        run = make_run(attempt)
        if _kill_when(cmd_for(run), ready_for(run, k), delay):
            return run
        k, delay = max(0, k - 1), delay / 4
    raise AssertionError("every run finished before its kill point: nothing was tested")


def _rerun(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def _temps(d: Path) -> list[str]:
    return [str(p) for p in d.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


@pytest.mark.parametrize("seed", SCORE_SEEDS)
def test_killed_score_run_resumes_to_identical_signals(base, tmp_path, seed):
    _, cfg, clean = base
    rng = random.Random(seed)

    def make_run(attempt: int) -> Path:
        _copy_corpus(clean, tmp_path / f"run{attempt}")
        return tmp_path / f"run{attempt}"

    def cmd_for(run: Path) -> list[str]:
        return [*TOKENWISE, "curate", "score", "--config", str(cfg), "--run", str(run)]

    def ready_for(run: Path, k: int):
        return lambda: len(list((run / "signals").glob("shard-*.parquet"))) >= k

    run = _kill_somewhere(make_run, cmd_for, ready_for, rng.randint(0, 4), rng.uniform(0, 0.4))
    sig, cmd = run / "signals", cmd_for(run)
    for p in sig.glob("shard-*.parquet"):  # whatever was published before the kill is complete
        assert pq.read_table(p).equals(pq.read_table(clean / "signals" / p.name)), (seed, p.name)
    assert not (sig / "_DONE.json").exists() or (sig / "manifest.json").exists(), "marker before the manifest"
    _rerun(cmd)
    names = sorted(p.name for p in sig.glob("shard-*.parquet"))
    assert names == sorted(p.name for p in (clean / "signals").glob("shard-*.parquet")), "missing or extra shard"
    for name in names:
        assert pq.read_table(sig / name).equals(pq.read_table(clean / "signals" / name)), (seed, name)
    ids = [i for n in names for i in pq.read_table(sig / n, columns=["id"]).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == 50, "a document was scored twice or lost"
    got, want = (json.loads((d / "signals/manifest.json").read_text())["totals"] for d in (run, clean))
    assert got == want
    assert _temps(sig) == []


def _tokenizer_files(d: Path) -> dict[str, bytes]:
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    return {f"{t.name}/{n}": (t / n).read_bytes() for t in sorted(d.iterdir()) if t.is_dir() for n in names}


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_tokenizer_training_resumes_to_identical_tokenizers(base, tmp_path, seed):
    from tokenizers import Tokenizer

    _, cfg, clean = base
    rng = random.Random(100 + seed)

    def make_run(attempt: int) -> Path:
        _copy_corpus(clean, tmp_path / f"run{attempt}")
        return tmp_path / f"run{attempt}"

    def cmd_for(run: Path) -> list[str]:
        return [*TOKENWISE, "tokenizer", "train", "--config", str(cfg), "--run", str(run)]

    def published(toks: Path) -> list[Path]:
        return [d for d in toks.glob("*") if d.is_dir() and not d.name.startswith(".")] if toks.is_dir() else []

    def ready_for(run: Path, k: int):
        return lambda: len(published(run / "tokenizers")) >= k

    run = _kill_somewhere(make_run, cmd_for, ready_for, rng.randint(0, 2), rng.uniform(0, 0.8))
    toks, cmd = run / "tokenizers", cmd_for(run)
    for d in published(toks):  # a published tokenizer dir is whole: it loads and equals the clean one
        Tokenizer.from_file(str(d / "tokenizer.json"))
        assert (d / "tokenizer.json").read_bytes() == (clean / "tokenizers" / d.name / "tokenizer.json").read_bytes()
    _rerun(cmd)
    assert _tokenizer_files(toks) == _tokenizer_files(clean / "tokenizers")
    assert sorted(p.name for p in toks.iterdir() if p.is_dir()) == ["tka", "tkb", "tkc"]
    assert _temps(toks) == [], "a killed run's temp dir survived the rerun"
    for name in ("tka", "tkb", "tkc"):
        assert (toks / name / "_DONE.json").is_file()
