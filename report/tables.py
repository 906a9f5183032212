"""Readers the report sections share: stage shards as Arrow tables, stage JSON, example texts by id."""

from __future__ import annotations

import glob
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from report.context import Context, Unavailable
from report.html import esc


def read_shards(ctx_run_root: str, stage: str, columns: list[str] | None = None) -> pa.Table:
    files = sorted(glob.glob(f"{ctx_run_root}/{stage}/shard-*.parquet"))
    if not files:
        raise Unavailable(f"no {stage}/shard-*.parquet in {ctx_run_root}; run the stage that writes {stage}/ first")
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        tables.append(pq.read_table(f, columns=[c for c in columns if c in names] if columns else None))
    return pa.concat_tables(tables, promote_options="default")


def group_rows(t: pa.Table, key: str, aggs: list[tuple[str, str]]) -> list[dict]:
    t = t.set_column(t.schema.get_field_index(key), key, pc.fill_null(t[key].cast(pa.string()), "unknown"))
    rows = t.group_by(key).aggregate(aggs).to_pylist()
    return sorted(rows, key=lambda r: -next(v for k, v in r.items() if k != key))


def corpus_table(root: str) -> pa.Table:
    """Corpus documents with their byte sizes (text dropped after measuring; a snapshot stores n_bytes already)."""
    t = read_shards(root, "corpus", ["id", "text", "source", "lang", "domain", "unit_id", "n_bytes"])
    if "n_bytes" not in t.column_names:
        t = t.append_column("n_bytes", pc.binary_length(t["text"].cast(pa.large_binary())))
    return t.drop([c for c in ("text",) if c in t.column_names])


def token_column(root: str) -> tuple[str, pa.Table] | None:
    """(reference tokenizer column, signals table of id + tokens) when signals exist."""
    files = sorted(glob.glob(f"{root}/signals/shard-*.parquet"))
    if not files:
        return None
    names = pq.read_schema(files[0]).names
    tok_cols = [c for c in names if c.startswith("tokens_")]
    if not tok_cols:
        return None
    col = "tokens_cl100k_base" if "tokens_cl100k_base" in tok_cols else tok_cols[0]
    return col, read_shards(root, "signals", ["id", col])


def shares(t: pa.Table, key: str, weight: str) -> dict[str, float]:
    rows = group_rows(t, key, [(weight, "sum")])
    total = sum(r[f"{weight}_sum"] or 0 for r in rows) or 1
    return {r[key]: (r[f"{weight}_sum"] or 0) / total for r in rows}


def stage_json(ctx: Context, *parts: str) -> dict:
    return json.loads(ctx.need(*parts).read_text(encoding="utf-8"))


def texts_by_id(root: str, ids: list[str], limit: int = 400) -> dict[str, str]:
    """Text of a few documents by id, read from the corpus shards (only matching rows are kept)."""
    want = pa.array(ids, pa.string())
    out: dict[str, str] = {}
    for f in sorted(glob.glob(f"{root}/corpus/shard-*.parquet")):
        t = pq.read_table(f, columns=["id", "text"])
        t = t.filter(pc.is_in(t["id"], value_set=want))
        out.update({i: (x or "")[:limit] for i, x in zip(t["id"].to_pylist(), t["text"].to_pylist(), strict=True)})
        if len(out) == len(ids):
            break
    return out


def example_list(examples: list[tuple[str, str]]) -> str:
    return "".join(f"<div class='ex' title='{esc(i)}'>{esc(t)}</div>" for i, t in examples)
