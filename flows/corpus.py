"""Corpus build and incremental refresh flows: thin wrappers over curation/corpus.py.

The refresh is incremental in the library: the corpus build compares each source file's content hash with the one in
the previous ``corpus/manifest.json`` and re-reads only new or changed files; the flow publishes which files changed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.registry import stages_of
from flows.tasks import diff_sources, publish_table, read_json_if, rows_of, source_hashes


def publish_corpus(group: str, run_dir: str) -> None:
    """Documents per language/domain/source from the manifest, as small tables."""
    manifest = read_json_if(run_dir, "corpus", "manifest.json")
    if not isinstance(manifest, dict):
        return
    for what in ("by_lang", "by_domain", "by_source", "counts", "languages"):
        if manifest.get(what):
            publish_table(group, what.replace("_", "-"), rows_of(manifest[what], what.removeprefix("by_")), what)
    if manifest.get("quarantined") or manifest.get("quarantine"):
        q = manifest.get("quarantined") or manifest.get("quarantine")
        publish_table(group, "quarantine", rows_of(q, "file"), "quarantined records (file, reason)")


def _build(params: StageParams, key: str) -> dict[str, Any]:
    before = source_hashes(read_json_if(params.run_dir, "corpus", "manifest.json"))
    out = run_group("corpus", params, publish=publish_corpus)
    after = source_hashes(read_json_if(params.run_dir, "corpus", "manifest.json"))
    changes = diff_sources(before, after)
    publish_table(key, "changes", changes, "source files new/changed/removed since the previous build")
    out["changes"] = {c["change"]: c["file"] for c in changes} | {"n_changed": len(changes) - 1}
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
