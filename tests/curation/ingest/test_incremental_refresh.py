"""Incremental corpus refresh: a real small corpus (prose files + installed .mo catalogs), build + score, then add one
file, change one, delete one; the refresh reads and scores only what changed and the report diff shows it."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.decide.decisions import DecideConfig, run_decide
from curation.ingest.build import CorpusBuildStep, CorpusConfig, build
from curation.signals.dedup import run_dedup
from curation.signals.score import ScoreConfig, score_run
from report.build import build_report, snapshot_for_diff

LOCALE = Path("/usr/share/locale")
CATALOGS = [("de", "popt"), ("fr", "popt"), ("de", "libsecret")]
PROSE = {  # real English prose: docstrings of stdlib modules
    "a.txt": inspect.getdoc(textwrap),
    "b.txt": inspect.getdoc(shutil),
    "c.txt": inspect.getdoc(json),
    "d.txt": inspect.getdoc(hashlib),
}


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    missing = [f"{loc}/{dom}" for loc, dom in CATALOGS if not (LOCALE / loc / "LC_MESSAGES" / f"{dom}.mo").is_file()]
    if missing:
        pytest.skip(f"installed gettext catalogs missing: {missing}")
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    for name, text in PROSE.items():
        (src / "docs" / name).write_text(text + "\n", encoding="utf-8")
    for loc, dom in CATALOGS:
        dest = src / "locale" / loc / "LC_MESSAGES" / f"{dom}.mo"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LOCALE / loc / "LC_MESSAGES" / f"{dom}.mo", dest)
    return src


def corpus_cfg(src: Path, **kw) -> CorpusConfig:
    return CorpusConfig.model_validate(
        {
            "sources": [
                {"type": "text_dir", "name": "docs", "paths": [str(src / "docs")], "patterns": ["*.txt"]},
                {"type": "gettext", "root": str(src / "locale"), "min_words": 1},
            ],
            "incremental": True,
            "item_files": 1,
            "tasks": 2,
            "workers": 1,
            **kw,
        }
    )


SCORE = ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, heuristics=False, tasks=1, workers=1)


def shard_files(run: Path, stage: str = "corpus") -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run / stage).glob("shard-*.parquet")}


def ids_by_source(run: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in sorted((run / "corpus").glob("shard-*.parquet")):
        t = pq.read_table(p, columns=["id", "source"])
        for i, s in zip(t["id"].to_pylist(), t["source"].to_pylist(), strict=True):
            out.setdefault(s, set()).add(i)
    return out


def curate(run: Path) -> dict:
    """score + dedup + decide, then check that no stage kept outputs of shards the corpus no longer has."""
    score_run(SCORE, str(run))
    run_dedup(str(run))
    summ = run_decide(str(run), DecideConfig())
    corpus_ids = set().union(*ids_by_source(run).values())
    n = len(list((run / "corpus").glob("shard-*.parquet")))
    for stage in ("signals", "signals/dedup", "curated"):
        assert len(list((run / stage).glob("shard-*.parquet"))) == n, stage
    dedup_ids = [
        i for p in (run / "signals/dedup").glob("shard-*.parquet") for i in pq.read_table(p)["id"].to_pylist()
    ]
    assert sorted(dedup_ids) == sorted(corpus_ids), "dedup signatures of the current shards, not stale ones"
    curated = {i for p in (run / "curated").glob("shard-*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    assert curated <= corpus_ids and len(curated) == summ["kept"] == summ["kept_written"]
    assert summ["input"] == len(corpus_ids)
    return json.loads((run / "signals" / "manifest.json").read_text())


def item_of(manifest: dict, path: Path) -> dict:
    (item,) = [it for it in manifest["items"] if str(path) in it["files"]]
    return item


def mutate(src: Path) -> tuple[Path, Path, Path]:
    """Add docs/e.txt, change docs/b.txt, delete the libsecret catalog; returns (added, changed, removed)."""
    added, changed = src / "docs" / "e.txt", src / "docs" / "b.txt"
    added.write_text(inspect.getdoc(inspect) + "\n", encoding="utf-8")
    changed.write_text(changed.read_text(encoding="utf-8") + "\nA sentence added by the refresh test.\n")
    removed = src / "locale" / "de" / "LC_MESSAGES" / "libsecret.mo"
    removed.unlink()
    return added, changed, removed


def test_refresh_reads_and_scores_only_new_and_changed_items(sources, tmp_path):
    run = tmp_path / "run"
    m1 = build(corpus_cfg(sources), str(run))
    assert m1["refresh"]["items_read"] == m1["refresh"]["items"] == 6  # 4 prose files, popt, libsecret
    s1 = curate(run)
    assert s1["this_run"]["rows_scored"] == m1["documents"]
    before, ids1 = shard_files(run), ids_by_source(run)
    assert set(before) == {s["name"] for s in m1["shards"]}
    assert all(before[s["name"]] == s["sha256"] for s in m1["shards"]), "manifest hashes are the shard bytes"
    assert set(m1["file_sha256"]) == {str(p) for p in sources.rglob("*") if p.is_file()}

    snap = snapshot_for_diff(str(run), str(tmp_path / "history" / "1"))
    added, changed, removed = mutate(sources)
    m2 = build(corpus_cfg(sources), str(run))
    r = m2["refresh"]
    assert r["files_reread"] == sorted([str(changed), str(added)]), "only the new and the changed file are read"
    assert set(r["files_read"]) == {str(changed), str(added)}
    assert (r["files_added"], r["files_changed"], r["files_removed"]) == ([str(added)], [str(changed)], [str(removed)])
    assert (r["items"], r["items_read"], r["items_reused"]) == (6, 2, 4)
    assert m2["files"][str(changed)]["read"] == r["files_read"][str(changed)] == 1

    after = shard_files(run)
    gone = set(item_of(m1, changed)["shards"]) | set(item_of(m1, removed)["shards"])
    new = set(item_of(m2, changed)["shards"]) | set(item_of(m2, added)["shards"])
    kept = set(before) - gone
    assert kept and all(after[n] == before[n] for n in kept), "unchanged shards keep their names and bytes"
    assert set(after) == kept | new and not (gone & set(after)) and not (new & set(before))
    assert set(after) == {s["name"] for s in m2["shards"]}
    assert not list(run.rglob(".tmp-*"))

    # removed catalog's documents are gone; counts reconcile with the per-item shards
    ids2 = ids_by_source(run)
    docs_of = {n: pq.read_metadata(run / "corpus" / n).num_rows for n in after}
    assert m2["documents"] == sum(docs_of.values()) == sum(s["rows"] for s in m2["shards"])
    assert m2["records"]["read"] == m2["records"]["kept"] + m2["records"]["quarantined"]
    assert m2["by_source"]["docs"]["documents"] == 5
    assert m2["documents"] == m1["documents"] + 1 - (len(ids1["gettext"]) - len(ids2["gettext"]))
    assert ids2["docs"] - ids1["docs"] == {f"docs:{added.name}"}

    # scoring: only the new/changed shards' documents; signals of vanished shards are deleted
    s2 = curate(run)
    assert s2["this_run"]["rows_scored"] == sum(docs_of[n] for n in new) == 2
    assert s2["this_run"]["shards_scored"] == len(new) and s2["this_run"]["shards_reused"] == len(kept)
    assert set(shard_files(run, "signals")) == set(after), "one signals shard per corpus shard, none stale"
    sig_ids = {i for p in (run / "signals").glob("shard-*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    assert sig_ids == set().union(*ids2.values())

    # the report's diff names exactly the added and removed documents per source
    build_report(str(run), previous=snap)
    diff = json.loads((run / "report" / "report.json").read_text())["sections"]["diff"]
    assert diff["unavailable"] is None
    expect = {s: [len(ids2.get(s, set()) - ids1.get(s, set())), len(ids1.get(s, set()) - ids2.get(s, set()))]
              for s in set(ids1) | set(ids2)}  # fmt: skip
    expect = {s: v for s, v in expect.items() if v != [0, 0]}
    assert (
        diff["data"]["per_source"]
        == expect
        == {"docs": [1, 0], "gettext": [0, len(ids1["gettext"] - ids2["gettext"])]}
    )
    assert diff["data"]["new_documents"] == 1 and diff["data"]["removed_documents"] == expect["gettext"][1] > 0

    # nothing changed: the stage marker skips, and a rebuild from the items reuses everything
    assert build(corpus_cfg(sources), str(run))["refresh"]["items_read"] == 2, "marker skip returns the manifest"
    (run / "corpus" / "_DONE.json").unlink()
    m3 = build(corpus_cfg(sources), str(run))
    assert m3["refresh"]["items_read"] == 0 and shard_files(run) == after

    # fewer shards than before: downstream stages drop what belonged to the vanished ones
    (sources / "docs" / "c.txt").unlink()
    (sources / "docs" / "d.txt").unlink()
    m4 = build(corpus_cfg(sources), str(run))
    assert m4["refresh"]["items_read"] == 0 and len(m4["shards"]) == len(after) - 2
    assert curate(run)["this_run"]["rows_scored"] == 0


class Interrupted(RuntimeError):
    """Stands for the process dying in the middle of a refresh."""


def test_interrupted_refresh_resumes_without_duplicates_or_loss(sources, tmp_path, monkeypatch):
    cfg = corpus_cfg(sources, tasks=1)
    run = tmp_path / "run"
    build(cfg, str(run))
    mutate(sources)
    (sources / "docs" / "f.txt").write_text(inspect.getdoc(Path) + "\n", encoding="utf-8")  # 3 items to read
    real, calls = CorpusBuildStep._run_item, []

    def dies_on_second_item(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted("killed mid-refresh")
        return real(self, *a, **kw)

    monkeypatch.setattr(CorpusBuildStep, "_run_item", dies_on_second_item)
    with pytest.raises(Interrupted):
        build(cfg, str(run))
    monkeypatch.undo()
    assert not (run / "corpus" / "_DONE.json").exists(), "an interrupted refresh is never marked complete"
    assert "refresh" in json.loads((run / "corpus" / "manifest.json").read_text()), "the old manifest stays"

    m = build(cfg, str(run))
    assert m["refresh"]["items_read"] == 2, "the item finished before the crash is not read again"
    fresh = build(cfg, str(tmp_path / "fresh"))
    assert shard_files(run) == shard_files(tmp_path / "fresh"), "same shards, names and bytes as a clean build"
    for k in ("documents", "records", "by_source", "by_lang", "files", "file_sha256", "shards"):
        assert m[k] == fresh[k], k
    ids = [i for p in (run / "corpus").glob("shard-*.parquet") for i in pq.read_table(p)["id"].to_pylist()]
    assert len(ids) == len(set(ids)) == m["documents"]
    assert not list(run.rglob(".tmp-*"))


@pytest.mark.slow  # a Prefect test server (~20 s to start) and two refresh flow runs
def test_refresh_flow_reports_what_changed(sources, tmp_path, monkeypatch):
    """The corpus-refresh flow (ephemeral Prefect): snapshot, incremental rebuild, rescore, report diff artifacts."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.corpus_flow import corpus_refresh_flow
    from flows.params import StageParams
    from tokenwise.stages import REGISTRY

    stages = [REGISTRY.stage(n) for n in ("corpus", "score", "report")]  # dedup/decide: covered above, cost time here
    monkeypatch.setattr(REGISTRY, "stages", stages)
    config = tmp_path / "refresh.yaml"
    config.write_text(textwrap.dedent(f"""\
        corpus:
          sources:
            - {{type: text_dir, name: docs, paths: ['{sources / "docs"}'], patterns: ['*.txt']}}
            - {{type: gettext, root: '{sources / "locale"}', min_words: 1}}
          incremental: true
          item_files: 1
          tasks: 1
          workers: 1
        score: {{tokenizers: ['tiktoken:cl100k_base'], run_tokenizers: false, heuristics: false, tasks: 1, workers: 1}}
        prefect: {{result_storage: '{tmp_path / "results"}'}}
        """))  # fmt: skip
    run = tmp_path / "run"
    params = StageParams(config_path=str(config), run_dir=str(run))
    with prefect_test_harness(server_startup_timeout=120):
        from _flow_stages import read_artifact

        first = corpus_refresh_flow(params)
        assert first["report"]["previous"] is None and not (run / "history").exists()
        ids1 = ids_by_source(run)
        added, changed, removed = mutate(sources)
        out = corpus_refresh_flow(params)
        summary = read_artifact("tokenwise-report-summary")
        link = read_artifact("tokenwise-report-link")
        changes = read_artifact("tokenwise-corpus-refresh-changes")
    (snap,) = (run / "history").iterdir()
    assert out["report"]["previous"] == str(snap)
    manifest = json.loads((run / "corpus" / "manifest.json").read_text())
    assert manifest["refresh"]["files_reread"] == sorted([str(added), str(changed)])
    assert json.loads((run / "signals" / "manifest.json").read_text())["this_run"]["rows_scored"] == 2
    diff = json.loads((run / "report" / "report.json").read_text())["sections"]["diff"]["data"]
    n_removed = len(ids1["gettext"] - ids_by_source(run)["gettext"])
    assert diff["per_source"] == {"docs": [1, 0], "gettext": [0, n_removed]} and n_removed > 0
    assert f"1 new and {n_removed} removed documents" in summary.data
    assert f"{run}/report/index.html)" in link.data
    rows = {
        r["file"]: r["change"] for r in (json.loads(changes.data) if isinstance(changes.data, str) else changes.data)
    }
    assert (rows[str(added)], rows[str(changed)], rows[str(removed)]) == ("new", "changed", "removed")
