"""Tokenizer train/eval flow: a thin wrapper over curation/tokenizer/train.py and tokenizer_eval.py."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.params import TokenizerParams
from flows.tasks import publish_table, read_csv_if


def publish_tokenizer(group: str, run_dir: str) -> None:
    """Premium vs English per language and tokenizer, and savings per tokenizer, from the library's CSVs."""
    premiums = read_csv_if(run_dir, "tokenizers", "premium_vs_eng_Latn.csv")
    savings = read_csv_if(run_dir, "tokenizers", "savings.csv")
    publish_table(group, "premiums", premiums, "TPSU relative to English per language (rows) and tokenizer (columns)")
    publish_table(
        group, "savings", savings, "token savings of each tokenizer vs its reference per language and domain"
    )


@flow(name="tokenwise-tokenizer", flow_run_name=run_name("tokenizer"), persist_result=True)
def tokenizer_flow(params: TokenizerParams = TokenizerParams()) -> dict[str, Any]:
    """Train the run's tokenizers and evaluate them (TPSU, premium vs English, fertility) on held-out units.

    Args:
        params: Config file, run directory and one tokenizer's model and vocabulary size.
    """
    return run_group("tokenizer", params, publish=publish_tokenizer)
