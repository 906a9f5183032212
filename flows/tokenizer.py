"""Tokenizer train/eval flow: a thin wrapper over curation/tokenizer_train.py and tokenizer_eval.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import StageParams
from flows.tasks import MAX_ROWS, glob_json, publish_table, rows_of


def publish_tokenizer(group: str, run_dir: str) -> None:
    """Premiums per tokenizer and language, from each ``tokenizers/<name>/eval.json``."""
    rows: list[dict[str, Any]] = []
    for rel, ev in glob_json(run_dir, "tokenizers", "*", "eval.json"):
        table = ev.get("premiums") or ev.get("by_lang") or ev.get("languages") or ev if isinstance(ev, dict) else ev
        rows += [{"tokenizer": rel[1], **r} for r in rows_of(table, "lang")]
    publish_table(group, "premiums", rows[:MAX_ROWS], "token premium vs English per tokenizer and language")


@flow(name="tokenwise-tokenizer", flow_run_name=run_name("tokenizer"), persist_result=True)
def tokenizer_flow(params: StageParams = StageParams()) -> dict[str, Any]:
    """Train the run's tokenizers and evaluate them (TPSU, premium vs English, fertility) on held-out units.

    Args:
        params: Config file and run directory of the run.
    """
    return run_group("tokenizer", params, publish=publish_tokenizer)
