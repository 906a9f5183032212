"""The ``tokens`` stage: config section, idempotent reruns, recount of changed shards only, and the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus  # noqa: E402
from typer.testing import CliRunner

from curation.plans.token_counts import run_stage
from tokenwise.config import ConfigError

SPECS = ("tiktoken:cl100k_base", "tiktoken:o200k_base")
CONFIG = """\
run:
  seed: 0
tokens:
  tokenizers: [tiktoken:cl100k_base, tiktoken:o200k_base]
  source: corpus
  tasks: 1
  workers: 1
"""


@pytest.fixture
def run(tmp_path) -> Path:
    """Three corpus shards of real gettext translations (7 languages) and stdlib modules."""
    write_corpus(tmp_path / "run", parallel_docs(limit=10) + stdlib_docs(), shard_size=30)
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path / "run"


def direct_counts(run: Path) -> dict[str, int]:
    """Tokens of every corpus text, encoded one by one without the stage."""
    from tokenwise.tokenizer_specs import load_tokenizer

    texts = [t for p in sorted((run / "corpus").glob("shard-*.parquet")) for t in pq.read_table(p)["text"].to_pylist()]
    return {spec: sum(len(load_tokenizer(spec).encode(t)) for t in texts) for spec in SPECS} | {"docs": len(texts)}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.json"))}


def test_stage_twice_is_idempotent_and_equals_a_direct_count(run):
    config = str(run.parent / "c.yaml")
    first = run_stage(config, str(run))
    out = run / "tokens" / "corpus"
    counts, files = (out / "counts.json").read_text(), mtimes(out)
    second = run_stage(config, str(run))
    assert not first.startswith("up to date") and second == f"up to date: {first}"
    assert (out / "counts.json").read_text() == counts and mtimes(out) == files, "a rerun must write nothing"
    merged = json.loads(counts)
    direct = direct_counts(run)
    assert merged["totals"] == {s: direct[s] for s in SPECS} and merged["docs"] == direct["docs"]
    assert merged["shards"] == 3 and {"de", "fr", "hi", "en"} <= set(merged["by_lang"])
    assert json.loads((out / "_DONE.json").read_text())["summary"]["totals"] == merged["totals"]


def test_changed_shard_is_the_only_one_recounted(run):
    config = str(run.parent / "c.yaml")
    run_stage(config, str(run))
    out = run / "tokens" / "corpus"
    before = mtimes(out)
    shard = run / "corpus" / "shard-00001.parquet"
    pq.write_table(pq.read_table(shard).slice(0, 7), shard)  # a refresh rewrote this shard with fewer rows
    summary = run_stage(config, str(run))
    after = mtimes(out)
    assert not summary.startswith("up to date")
    assert {n for n in after if after[n] != before.get(n)} == {"shard-00001.json", "counts.json", "_DONE.json"}
    merged = json.loads((out / "counts.json").read_text())
    direct = direct_counts(run)
    assert merged["totals"] == {s: direct[s] for s in SPECS} and merged["docs"] == direct["docs"]


def test_bad_tokens_key_names_file_line_and_key(run):
    config = run.parent / "c.yaml"
    config.write_text(CONFIG.replace("  source: corpus\n", "  source: corpus\n  split: everything\n  tokenizer: []\n"))
    with pytest.raises(ConfigError) as err:
        run_stage(str(config), str(run))
    msg = str(err.value)
    assert f"{config}:6: tokens.split: Input should be 'all', 'train' or 'heldout' (got 'everything')" in msg
    assert f"{config}:7: tokens.tokenizer: unknown key; remove it or check its spelling" in msg
    assert not (run / "tokens").exists(), "a bad config must fail before any work"


def test_cli_prints_where_it_runs_and_the_totals(run):
    from tokenwise.cli import app

    args = ["curate", "tokens", "--config", str(run.parent / "c.yaml"), "--run", str(run)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    direct = direct_counts(run)
    lines = first.output.strip().splitlines()
    assert lines[0].startswith("counting corpus of") and "executor=local" in lines[0] and "workers=1" in lines[0]
    assert lines[-1].startswith(f"{run / 'tokens' / 'corpus' / 'counts.json'}: 3 shards")
    assert f"tiktoken:cl100k_base {direct['tiktoken:cl100k_base']:,}" in lines[-1]
    again = CliRunner().invoke(app, args)
    assert "counts.json: up to date: 3 shards" in again.output
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and "up to date" not in forced.output
