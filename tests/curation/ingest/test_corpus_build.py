"""The corpus stage: config errors, manifest reconciliation, atomic shards, resume after a crash, the real CLI."""

import contextlib
import json
import os
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
from typer.testing import CliRunner

from curation.executors import ExecutorError
from curation.ingest.build import CorpusConfig, CorpusError, build
from tokenwise.config import ConfigError, load_section
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.rundir import sha256_file

ROOT = REPO
TOKENWISE = [sys.executable, "-c", "from tokenwise.cli import main; main()"]


def _config(tmp_path: Path, corpus: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"corpus": corpus}, sort_keys=False))
    return path


@pytest.fixture
def inputs(tmp_path, write_lines, make_mo):
    """A small mixed corpus: JSONL with bad lines, Parquet, prose dir, two gettext catalogs."""
    good = [json.dumps({"text": f"record {i} " + "words " * (i % 7), "id": f"r{i}"}).encode() for i in range(300)]
    write_lines("data/a.jsonl", good[:150] + [b"{broken", b'{"text": 5}', b"[1]", b'{"text": "r", "id": "r3"}'])
    write_lines("data/b.jsonl.gz", good[150:] + [b'{"text": "  "}'])
    pq.write_table(pa.table({"text": ["parquet one", "parquet two", None]}), tmp_path / "data" / "c.parquet")
    prose = tmp_path / "prose"
    prose.mkdir()
    (prose / "guide.md").write_text("# Guide\n\nHow to read the guide.")
    (prose / "notes.txt").write_text("Plain notes.")
    (prose / "blob.txt").write_bytes(bytes(range(256)) * 4)
    make_mo("de", "app", {"Open the selected file": "Ausgewählte Datei öffnen", "%s": "%s"})
    make_mo("ja", "app", {"Open the selected file": "選択したファイルを開く"})
    return tmp_path


def _corpus(inputs: Path, **over) -> dict:
    corpus = {
        "sources": [
            {"type": "jsonl", "name": "mine", "paths": [str(inputs / "data")], "domain": "docs"},
            {"type": "parquet", "name": "pq", "paths": [str(inputs / "data" / "*.parquet")]},
            {"type": "text_dir", "name": "prose", "paths": [str(inputs / "prose")]},
            {"type": "gettext", "root": str(inputs / "locale")},
        ],
        "shard_bytes": 4096,
        "row_group_bytes": 1024,
        "block_bytes": 1 << 16,
        "max_doc_bytes": 1 << 15,
    }
    corpus.update(over)
    return corpus


def _read_shards(run: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((run / "corpus").glob("shard-*.parquet"))])


def test_build_writes_shards_manifest_and_reconciled_quarantine(inputs, tmp_path):
    cfg = CorpusConfig.model_validate(_corpus(inputs, tasks=2, workers=1))
    run = tmp_path / "run"
    m = build(cfg, str(run))
    r = m["records"]
    assert r["read"] == r["kept"] + r["quarantined"]
    assert m["quarantine_reasons"] == {
        "binary_file": 1,
        "duplicate_id": 1,
        "empty_text": 1,
        "invalid_json": 1,
        "missing_text": 1,
        "not_an_object": 1,
        "text_not_string": 1,
    }
    assert sum(m["quarantine_reasons"].values()) == r["quarantined"]
    for f, c in m["files"].items():
        assert c["read"] == c["kept"] + c["quarantined"], f
    assert m["files"][str(inputs / "data" / "a.jsonl")] == {"read": 154, "kept": 150, "quarantined": 4}
    table = _read_shards(run)
    assert table.schema.equals(CORPUS_SCHEMA) and table.num_rows == m["documents"] == r["kept"]
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert sum(v["documents"] for v in m["by_lang"].values()) == m["documents"]
    assert sum(v["bytes"] for v in m["by_domain"].values()) == m["bytes"]
    assert m["by_lang"]["en"]["documents"] == 1 and m["by_lang"]["ja"]["documents"] == 1
    assert m["by_source"]["mine"]["documents"] == 300 and m["by_domain"]["ui"]["documents"] == 3
    assert len(m["shards"]) > 2 and all(sha256_file(run / "corpus" / s["name"]) == s["sha256"] for s in m["shards"])
    assert {s["name"] for s in m["shards"]} == {p.name for p in (run / "corpus").glob("shard-*.parquet")}
    assert m["quarantine_files"] == ["quarantine/rank-00000.jsonl", "quarantine/rank-00001.jsonl"]
    quarantined = [json.loads(x) for f in m["quarantine_files"] for x in (run / "corpus" / f).open()]
    assert len(quarantined) == r["quarantined"]
    assert {"file", "line", "offset", "reason", "detail", "snippet", "source"} <= set(quarantined[0])
    assert not list((run / "corpus").rglob(".tmp-*"))
    assert json.loads((run / "corpus" / "_DONE.json").read_text())["inputs_hash"] == m["inputs_hash"]


def test_rerun_skips_and_config_change_rebuilds(inputs, tmp_path):
    run = tmp_path / "run"
    m1 = build(CorpusConfig.model_validate(_corpus(inputs)), str(run))
    t0 = time.perf_counter()
    assert build(CorpusConfig.model_validate(_corpus(inputs)), str(run)) == m1
    assert time.perf_counter() - t0 < 5
    m2 = build(CorpusConfig.model_validate(_corpus(inputs, tasks=3)), str(run))
    names = sorted(p.name for p in (run / "corpus").glob("shard-*.parquet"))
    assert names == sorted(s["name"] for s in m2["shards"]) and m2["documents"] == m1["documents"]


def test_resume_after_lost_rank_rebuilds_the_same_shards(inputs, tmp_path):
    cfg = CorpusConfig.model_validate(_corpus(inputs, tasks=2))
    run = tmp_path / "run"
    first = build(cfg, str(run))
    corpus = run / "corpus"
    rank1 = [s["name"] for s in first["shards"] if int(s["name"][6:11]) % 2 == 1]
    assert rank1, "rank 1 should own shards"
    # simulate a crash of rank 1: its completion file, the stage marker and one shard gone, a temp file left behind
    (corpus / "logs" / "completions" / "00001").unlink()
    (corpus / "_DONE.json").unlink()
    (corpus / rank1[0]).unlink()
    (corpus / f".tmp-deadbeef0000-{rank1[-1]}").write_bytes(b"partial")
    (corpus / ".tmp-deadbeef0001-manifest.json").write_bytes(b"{")
    second = build(cfg, str(run))
    assert [(s["name"], s["sha256"]) for s in second["shards"]] == [(s["name"], s["sha256"]) for s in first["shards"]]
    assert second["records"] == first["records"]
    table = _read_shards(run)
    assert table.num_rows == first["documents"] and len(set(table.column("id").to_pylist())) == table.num_rows
    assert not list(corpus.rglob(".tmp-*"))


def test_killed_build_resumes_without_duplicates_or_losses(tmp_path, write_lines):
    rows = [json.dumps({"text": f"line {i} " + "padding " * 40, "id": f"k{i}"}).encode() for i in range(400)]
    for f in range(12):
        write_lines(f"many/f{f:02d}.jsonl", rows[f * 30 : f * 30 + 30] + [b"{bad"])
    corpus = {"sources": [{"type": "jsonl", "name": "many", "paths": [str(tmp_path / "many")]}],
              "shard_bytes": 8192, "row_group_bytes": 2048, "tasks": 4}  # fmt: skip
    cfg_path = _config(tmp_path, corpus)
    clean = build(CorpusConfig.model_validate(corpus), str(tmp_path / "clean"))
    run = tmp_path / "run"
    env = {**os.environ, "TOKENWISE_DATATROVE_LEVEL": "ERROR"}
    cmd = [*TOKENWISE, "corpus", "build", "--config", str(cfg_path), "--run", str(run)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list((run / "corpus" / "logs" / "completions").glob("0000*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # its orphaned workers too: the whole job died
        os.killpg(proc.pid, signal.SIGKILL)
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = json.loads((run / "corpus" / "manifest.json").read_text())
    assert [(s["name"], s["sha256"]) for s in m["shards"]] == [(s["name"], s["sha256"]) for s in clean["shards"]]
    assert m["records"] == clean["records"] == {"read": 372, "kept": 360, "quarantined": 12}


def test_config_errors_name_file_line_and_fix(tmp_path):
    bad_key = _config(tmp_path, {"sources": [{"type": "jsonl", "paths": ["/x"], "name": "a", "textkey": "t"}]})
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: corpus.sources.0.jsonl.textkey: unknown key"):
        load_section(bad_key, "corpus", CorpusConfig)
    missing = _config(tmp_path, {"sources": [{"type": "jsonl", "name": "a", "paths": [str(tmp_path / "nope")]}]})
    with pytest.raises(ConfigError, match="does not exist; fix the path, or set optional: true"):
        load_section(missing, "corpus", CorpusConfig)
    bad_type = _config(tmp_path, {"sources": [{"type": "csv", "name": "a", "paths": ["/x"]}]})
    with pytest.raises(ConfigError, match="corpus.sources.0"):
        load_section(bad_type, "corpus", CorpusConfig)
    dup = _config(tmp_path, {"sources": [{"type": "stdlib"}, {"type": "stdlib"}]})
    with pytest.raises(ConfigError, match="source names must be unique"):
        load_section(dup, "corpus", CorpusConfig)
    with pytest.raises(ConfigError, match="tasks"):
        load_section(_config(tmp_path, {"sources": [{"type": "stdlib"}], "tasks": 0}), "corpus", CorpusConfig)


def test_unsupported_executor_and_nothing_readable_are_one_clear_error(tmp_path, write_lines):
    path = write_lines("bad.jsonl", [b"{nope", b"[]"])
    cfg = CorpusConfig.model_validate({"sources": [{"type": "jsonl", "name": "b", "paths": [str(path)]}]})
    with pytest.raises(CorpusError, match="no documents could be read.*2 records were quarantined"):
        build(cfg, str(tmp_path / "run"))
    slurm = CorpusConfig.model_validate(
        {"sources": [{"type": "jsonl", "name": "b", "paths": [str(path)]}], "executor": "slurm"}
    )
    with pytest.raises(ExecutorError, match="slurm needs slurm_partition"):
        build(slurm, str(tmp_path / "run2"))


def test_optional_missing_source_is_skipped(inputs, tmp_path):
    corpus = _corpus(inputs)
    corpus["sources"].append(
        {"type": "text_dir", "name": "gone", "paths": [str(tmp_path / "no_such")], "optional": True}
    )
    m = build(CorpusConfig.model_validate(corpus), str(tmp_path / "run"))
    assert "gone" not in m["by_source"] and m["documents"] > 0


def test_hf_sources_in_a_build(tmp_path, write_lines):
    import datasets

    datasets.Dataset.from_dict({"body": ["saved one", "saved two", ""]}).save_to_disk(str(tmp_path / "saved"))
    files = write_lines("hf/part.jsonl", [b'{"text": "from a data file", "id": "f1"}'])
    corpus = {"sources": [
        {"type": "hf", "name": "saved", "path": str(tmp_path / "saved"), "fields": {"text": "body"}, "lang": "en"},
        {"type": "hf", "name": "files", "data_files": [str(files)], "builder": "json"},
    ]}  # fmt: skip
    m = build(CorpusConfig.model_validate(corpus), str(tmp_path / "run"))
    assert m["by_source"]["saved"]["documents"] == 2 and m["by_source"]["files"]["documents"] == 1
    assert m["quarantine_reasons"] == {"empty_text": 1} and m["by_lang"]["en"]["documents"] == 2


REAL_CATALOGS = sorted({p.stem for p in Path("/usr/share/locale").glob("de/LC_MESSAGES/*.mo")})


@pytest.mark.skipif(not REAL_CATALOGS, reason="no gettext catalogs under /usr/share/locale")
def test_cli_builds_a_tiny_real_slice(tmp_path):
    from tokenwise.cli import app

    corpus = {
        "sources": [
            {"type": "gettext", "languages": ["de", "ja"], "catalogs": REAL_CATALOGS[:2], "min_words": 2},
            {"type": "stdlib", "max_modules": 6, "docstring_min_chars": 40},
        ]
    }
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["corpus", "build", "--config", str(_config(tmp_path, corpus)), "--run", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {run}/corpus/" in result.output and "documents" in result.output
    m = json.loads((run / "corpus" / "manifest.json").read_text())
    assert m["by_lang"]["en"]["documents"] > 0 and {"de", "ja"} & set(m["by_lang"])
    assert (
        m["by_domain"]["code"]["documents"] > 0
        and m["records"]["read"] == m["records"]["kept"] + m["records"]["quarantined"]
    )
    table = _read_shards(run)
    ui = table.filter(pa.compute.equal(table.column("domain"), "ui")).to_pylist()
    units = {}
    for row in ui:
        units.setdefault(row["unit_id"], set()).add(row["lang"])
    assert all("en" in langs and len(langs) >= 2 for langs in units.values())


def test_write_error_on_the_writer_thread_fails_the_rank_cleanly(inputs, tmp_path, monkeypatch):
    """Row groups are written on a background thread: a write error there (disk full) fails the build, leaves no shard
    or temp file and no thread behind, and the rerun builds the same shards as a build that never failed."""
    import threading

    cfg = CorpusConfig.model_validate(_corpus(inputs))
    clean = build(cfg, str(tmp_path / "clean"))
    real, calls = pq.ParquetWriter.write_table, []

    def full_disk(self, *a, **kw):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    run = tmp_path / "run"
    with pytest.raises((ExecutorError, OSError)):
        build(cfg, str(run))
    assert calls[0].startswith("tokenwise-shard-writer")
    assert not list((run / "corpus").glob("shard-*.parquet")) and not list((run / "corpus").rglob(".tmp-*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("tokenwise-shard-writer")]
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real)
    again = build(cfg, str(run))
    assert [(s["name"], s["sha256"]) for s in again["shards"]] == [(s["name"], s["sha256"]) for s in clean["shards"]]
    assert again["records"] == clean["records"]
