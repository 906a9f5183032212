"""Corpus build and incremental refresh flows: thin wrappers over curation/corpus.py.

The refresh is incremental in the library: the corpus build compares each source file's content hash with the one in
the previous ``corpus/manifest.json`` and re-reads only new or changed files; the flow publishes which files changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from curation.rundir import RunDir, sha256_file, write_json
from flows.common import run_group, run_name
from flows.params import StageParams
from flows.registry import stages_of
from flows.tasks import IO_RETRIES, diff_sources, publish_table, read_json_if, rows_of


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
    now = {f: sha256_file(f) for f in manifest.get("files", {}) if Path(f).is_file()}
    before = read_json_if(run_dir, ".flows", "corpus-sources.json") or {}
    write_json(RunDir(run_dir).path(".flows", "corpus-sources.json"), now)
    return diff_sources(before, now)


def _build(params: StageParams, key: str) -> dict[str, Any]:
    out = run_group("corpus", params, publish=publish_corpus)
    changes = diff_source_files(params.run_dir)
    publish_table(key, "changes", changes, "source files new/changed/removed since the previous build")
    out["changes"] = {"n_changed": len(changes) - 1, "unchanged": changes[-1]["file"]}
    return out


@flow(name="tokenwise-corpus", flow_run_name=run_name("corpus"), persist_result=True)
def corpus_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Build the corpus (shards, manifest, quarantine) from the sources in the config's `corpus:` section.

    Args:
        params: Config file and run directory of the run.
    """
    return _build(params, "corpus")


@flow(name="tokenwise-corpus-refresh", flow_run_name=run_name("corpus-refresh"), persist_result=True)
def corpus_refresh_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Scheduled incremental refresh: rebuild the corpus from new/changed files, rescore, refresh the report.

    Args:
        params: Config file and run directory of the run.
    """
    from flows.curate import curate_flow
    from flows.report import report_flow

    out = {"corpus": _build(params, "corpus-refresh")}
    if stages_of("curate"):
        out["curate"] = curate_flow(params)
    if stages_of("report"):
        out["report"] = report_flow(params)
    return out
