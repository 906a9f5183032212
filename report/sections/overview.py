"""Report section "Corpus overview" (outputs of the corpus stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import corpus_table, group_rows, token_column


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
        rows = group_rows(t, key, aggs)[:40]
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
