"""Section builders of the report. Each takes a Context and returns a Section, or raises Unavailable(why)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.report import charts
from curation.report.build import Context, Unavailable
from curation.report.html import Section, esc


def _read_shards(ctx_run_root: str, stage: str, columns: list[str] | None = None) -> pa.Table:
    files = sorted(glob.glob(f"{ctx_run_root}/{stage}/shard-*.parquet"))
    if not files:
        raise Unavailable(f"no {stage}/shard-*.parquet in {ctx_run_root}; run the `{stage}` stage first")
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        tables.append(pq.read_table(f, columns=[c for c in columns if c in names] if columns else None))
    return pa.concat_tables(tables, promote_options="default")


def _group(t: pa.Table, key: str, aggs: list[tuple[str, str]]) -> list[dict]:
    t = t.set_column(t.schema.get_field_index(key), key, pc.fill_null(t[key].cast(pa.string()), "unknown"))
    rows = t.group_by(key).aggregate(aggs).to_pylist()
    return sorted(rows, key=lambda r: -next(v for k, v in r.items() if k != key))


def corpus_table(root: str) -> pa.Table:
    """Corpus documents with their byte sizes (text dropped after measuring)."""
    t = _read_shards(root, "corpus", ["id", "text", "source", "lang", "domain", "unit_id"])
    t = t.append_column("n_bytes", pc.binary_length(t["text"].cast(pa.large_binary())))
    return t.drop(["text"])


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
    return col, _read_shards(root, "signals", ["id", col])


def overview(ctx: Context) -> Section:
    t = corpus_table(ctx.run.root)
    tok = token_column(ctx.run.root)
    tok_name = None
    if tok:
        tok_name, sig = tok
        t = t.join(sig, "id", join_type="left outer")
    sec = Section("overview", "Corpus overview")
    n_docs, n_bytes = t.num_rows, pc.sum(t["n_bytes"]).as_py() or 0
    n_tok = pc.sum(t[tok_name]).as_py() if tok_name else None
    kpis = [("documents", f"{n_docs:,}"), ("bytes", f"{n_bytes / 1e6:.2f} MB")]
    if n_tok is not None:
        kpis.append((f"tokens ({tok_name.removeprefix('tokens_')})", f"{n_tok:,}"))
    manifest = Path(ctx.run.path("corpus", "manifest.json"))
    if manifest.exists():
        m = json.loads(manifest.read_text())
        q = m.get(
            "quarantined", m.get("records", {}).get("quarantined") if isinstance(m.get("records"), dict) else None
        )
        if q is not None:
            kpis.append(("quarantined records", f"{q:,}"))
    sec.html_parts.append("".join(f"<span class='kpi'><b>{esc(v)}</b>{esc(k)}</span>" for k, v in kpis))
    sec.data = {"documents": n_docs, "bytes": n_bytes, "tokens": n_tok, "tokenizer": tok_name}
    sec.data["headline"] = f"{n_docs:,} documents, {n_bytes / 1e6:.2f} MB" + (f", {n_tok:,} tokens" if n_tok else "")
    for key in ("lang", "domain", "source"):
        aggs = [("id", "count"), ("n_bytes", "sum")] + ([(tok_name, "sum")] if tok_name else [])
        rows = _group(t, key, aggs)[:40]
        labels = [r[key] for r in rows]
        absolute = {"documents": [r["id_count"] for r in rows], "bytes": [r["n_bytes_sum"] for r in rows]}
        if tok_name:
            absolute["tokens"] = [r[f"{tok_name}_sum"] or 0 for r in rows]
        totals = {"documents": n_docs, "bytes": n_bytes, "tokens": n_tok or 1}
        shares = {f"{k} (%)": [100 * x / (totals[k] or 1) for x in v] for k, v in absolute.items()}
        sec.data[f"by_{key}"] = {lab: {k: v[i] for k, v in absolute.items()} for i, lab in enumerate(labels)}
        title = f"Share of documents, bytes and tokens by {key}"
        chart = charts.hbar(f"overview_by_{key}", title, labels, shares, xlabel="share of corpus (%)", ylabel=key)
        chart.rows = [["label", *absolute, *shares]] + [
            [lab, *(v[i] for v in absolute.values()), *(v[i] for v in shares.values())] for i, lab in enumerate(labels)
        ]
        sec.charts.append(chart)
    return sec


def _shares(t: pa.Table, key: str, weight: str) -> dict[str, float]:
    rows = _group(t, key, [(weight, "sum")])
    total = sum(r[f"{weight}_sum"] or 0 for r in rows) or 1
    return {r[key]: (r[f"{weight}_sum"] or 0) / total for r in rows}


def languages(ctx: Context) -> Section:
    before = corpus_table(ctx.run.root)
    sec = Section("languages", "Language distribution: before and after filtering, and under the sampling plan")
    series: dict[str, dict[str, float]] = {"corpus (bytes share)": _shares(before, "lang", "n_bytes")}
    notes = []
    try:
        after = _read_shards(ctx.run.root, "curated", ["id", "text", "lang"])
        after = after.append_column("n_bytes", pc.binary_length(after["text"].cast(pa.large_binary()))).drop(["text"])
        series["curated (bytes share)"] = _shares(after, "lang", "n_bytes")
    except Unavailable as e:
        notes.append(str(e))
    plan_files = sorted(glob.glob(f"{ctx.run.root}/plans/*.json"))
    for pf in plan_files[:2]:
        plan = json.loads(Path(pf).read_text())
        langs = plan.get("languages", {})
        w = {k: float(v.get("weight", 0)) for k, v in langs.items() if isinstance(v, dict)}
        if w:
            series[f"plan {Path(pf).stem} (token weight)"] = w
    if not plan_files:
        notes.append("no sampling plan in plans/")
    labels = sorted(series["corpus (bytes share)"], key=lambda k: -series["corpus (bytes share)"][k])[:45]
    sec.charts.append(
        charts.hbar(
            "languages_shares",
            "Share of each language before/after filtering and in the plan",
            labels,
            {k: [v.get(lab, 0.0) * 100 for lab in labels] for k, v in series.items()},
            xlabel="share (%)",
            ylabel="language",
        )
    )
    sec.data = {"shares": series}
    if notes:
        sec.intro = esc("; ".join(notes))
    return sec


SECTIONS = [
    ("overview", "Corpus overview", overview),
    ("languages", "Language distribution", languages),
]
