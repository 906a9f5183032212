"""The curation chain on a run dir that is not a local path: corpus -> score -> dedup -> decide on ``memory://``.

Every stage reads and writes through the run dir's fsspec filesystem (no local glob, os.remove or pq.read_table on a
path), so the same run on s3:// works the same way; memory:// is the in-process filesystem that proves it offline.
"""

from __future__ import annotations

import json
import os

import fsspec
import pyarrow.parquet as pq
import pytest
from _paths import FIXTURES


@pytest.fixture
def memory_run():
    fs = fsspec.filesystem("memory")
    root = "memory://tokenwise-i22-run"
    yield root, fs
    if fs.exists("/tokenwise-i22-run"):
        fs.rm("/tokenwise-i22-run", recursive=True)


def test_corpus_score_dedup_decide_on_memory_fs(memory_run, tmp_path):
    from curation.decide.decisions import DecideConfig, Rule, run_decide, run_whatif
    from curation.ingest.build import CorpusConfig, build
    from curation.signals.dedup import DedupConfig, run_dedup
    from curation.signals.score import ScoreConfig, score_run

    root, fs = memory_run
    rows = pq.read_table(FIXTURES / "curation_corpus.parquet").slice(0, 80).to_pylist()
    src = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": r["id"], "text": r["text"], "lang": r["lang"]}) for r in rows]
    src.write_text("\n".join(lines + lines[:3]) + "\n")  # three repeated ids: quarantined by the build
    cfg = CorpusConfig.model_validate({"sources": [{"type": "jsonl", "name": "docs", "paths": [str(src)]}],
                                       "tasks": 1, "workers": 1, "shard_bytes": 16 << 10,
                                       "row_group_bytes": 8 << 10})  # fmt: skip
    cwd_before = set(os.listdir("."))
    manifest = build(cfg, root)
    assert manifest["documents"] == 80 and manifest["records"]["quarantined"] == 3
    assert len(fs.glob("/tokenwise-i22-run/corpus/shard-*.parquet")) >= 2, "want several shards to stream over"
    score = score_run(ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1),
                      root)  # fmt: skip
    assert score["rows_in"] == 80 == score["rows_scored"] + score["rows_quarantined"]
    dedup = run_dedup(root, DedupConfig())
    assert dedup.docs == 80
    rules = {"top_2_gram": Rule(signal="gopher_top_2_gram_frac", drop_if="gt", threshold=0.2,
                                applies_if={"min_words": 20})}  # fmt: skip
    decide = run_decide(root, DecideConfig(rules=rules))
    assert decide["reconciles"] and decide["input"] == 80
    assert decide["kept"] == decide["kept_written"] > 0 and decide["dropped"] > 0
    kept = sum(pq.read_metadata(f, filesystem=fs).num_rows for f in fs.glob("/tokenwise-i22-run/curated/shard-*"))
    assert kept == decide["kept"]
    assert fs.exists("/tokenwise-i22-run/curated/decisions.parquet")
    whatif = run_whatif(root, DecideConfig(rules=rules), ["top_2_gram=none"], name="off")
    assert whatif["dropped"] <= decide["dropped"] and whatif["vs_baseline"]["kept_delta"] >= 0
    assert fs.exists("/tokenwise-i22-run/curated/whatif/off/summary.json")
    assert set(os.listdir(".")) == cwd_before, "a stage wrote to the local working directory"
