"""Corpus build and incremental refresh flows: thin wrappers over curation/ingest/build.py.

The refresh is incremental in the library (``corpus.incremental: true``): the corpus build keeps the shards of work
items whose content hash is unchanged and re-reads only new or changed files, and ``curate score`` scores only shards
it has not scored. The refresh flow snapshots the run before rebuilding (``<run>/history/<UTC time>``, a text-free
index), then builds the report diffed against that snapshot and publishes which files changed plus the report's
short version (markdown artifact ``tokenwise-report-summary``) and its link.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import publish_markdown_file, run_group, run_name
from flows.curate_flow import curate_flow
from flows.params import CorpusParams, CurateParams
from flows.tasks import (
    IO_RETRIES,
    artifact_key,
    diff_sources,
    publish_report_link,
    publish_table,
    read_json_if,
    rows_of,
)
from report.build import ReportConfig, build_report, snapshot_for_diff
from tokenwise.config import load_section
from tokenwise.rundir import RunDir, sha256_file, write_json
from tokenwise.stages import REGISTRY

HISTORY_KEEP = 10  # snapshots kept under <run>/history (text-free indexes; the newest is the refresh's baseline)


def publish_corpus(group: str, run_dir: str) -> None:
    """Documents per language/domain/source from the manifest, as small tables."""
    manifest = read_json_if(run_dir, "corpus", "manifest.json")
    if not isinstance(manifest, dict):
        return
    for what in ("by_lang", "by_domain", "by_source"):
        if manifest.get(what):
            publish_table(group, what.replace("_", "-"), rows_of(manifest[what], what.removeprefix("by_")), what)
    files = {f: c for f, c in manifest.get("files", {}).items() if c.get("quarantined")}
    publish_table(group, "quarantine", rows_of(files, "file"), "source files with quarantined records")


@task(name="diff-sources", **IO_RETRIES)
def diff_source_files(run_dir: str) -> list[dict[str, str]]:
    """Hash every local source file the manifest lists and diff with the previous build's hashes.

    The hashes are kept in ``<run>/.flows/corpus-sources.json`` (flow bookkeeping, not a stage output).
    """
    manifest = read_json_if(run_dir, "corpus", "manifest.json") or {}
    now = manifest.get("file_sha256") or {f: sha256_file(f) for f in manifest.get("files", {}) if Path(f).is_file()}
    before = read_json_if(run_dir, ".flows", "corpus-sources.json") or {}
    write_json(RunDir(run_dir).path(".flows", "corpus-sources.json"), now)
    return diff_sources(before, now)


def _build(params: CorpusParams, key: str) -> dict[str, Any]:
    out = run_group("corpus", params, publish=publish_corpus)
    changes = diff_source_files(params.run_dir)
    publish_table(key, "changes", changes, "source files new/changed/removed since the previous build")
    out["changes"] = {"n_changed": len(changes) - 1, "unchanged": changes[-1]["file"]}
    return out


@flow(name="tokenwise-corpus", flow_run_name=run_name("corpus"), persist_result=True)
def corpus_flow(params: CorpusParams = CorpusParams()) -> dict[str, Any]:
    """Build the corpus (shards, manifest, quarantine) from the sources in the config's `corpus:` section.

    Args:
        params: Config file, run directory and the sources to read (blank = the config's).
    """
    return _build(params, "corpus")


@task(name="snapshot-previous", **IO_RETRIES)
def snapshot_previous(run_dir: str) -> str | None:
    """Keep a text-free index of the run's completed corpus (+ curated summary) before it is refreshed in place.

    Returns the snapshot to diff against: a new one when the corpus stage is complete, else the newest earlier one
    (an interrupted refresh leaves a half-rebuilt corpus that must not become the baseline), else None."""
    run, history = RunDir(run_dir), Path(run_dir) / "history"
    if run.marker("corpus") is not None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = history / stamp
        if dest.exists():  # two refreshes within a second: the same baseline
            return str(dest)
        for stale in history.glob(".partial-*"):  # an interrupted snapshot
            shutil.rmtree(stale, ignore_errors=True)
        snapshot_for_diff(run_dir, str(history / f".partial-{stamp}"))
        (history / f".partial-{stamp}").rename(dest)
    done = sorted(p for p in history.glob("*T*Z") if p.is_dir() and not p.name.startswith("."))
    for old in done[:-HISTORY_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return str(done[-1]) if done else None


@task(name="report-vs-previous", **IO_RETRIES)
def report_vs_previous(config_path: str, run_dir: str, previous: str | None) -> dict[str, Any]:
    """The curation report of the run, its diff section against ``previous``; publishes summary and link."""
    cfg = load_section(config_path, "report", ReportConfig)
    res = build_report(run_dir, previous=previous or cfg.previous, seed=cfg.seed)
    publish_markdown_file(run_dir, "report/summary.md", artifact_key("report", "summary"), "report headlines and diff")
    publish_report_link(run_dir)
    return {**res, "previous": previous}


@flow(name="tokenwise-corpus-refresh", flow_run_name=run_name("corpus-refresh"), persist_result=True)
def corpus_refresh_flow(params: CorpusParams = CorpusParams()) -> dict[str, Any]:
    """Scheduled incremental refresh: rebuild the corpus from new/changed files, rescore, refresh the report.

    Args:
        params: Config file, run directory and the sources to read (blank = the config's).
    """
    previous = snapshot_previous(params.run_dir) if REGISTRY.stages_of("report") else None
    out = {"corpus": _build(params, "corpus-refresh")}
    if REGISTRY.stages_of("curate"):
        out["curate"] = curate_flow(CurateParams(config_path=params.config_path, run_dir=params.run_dir))
    if REGISTRY.stages_of("report"):
        out["report"] = report_vs_previous(params.config_path, params.run_dir, previous)
    return out
