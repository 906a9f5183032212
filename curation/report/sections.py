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
        from curation.report.build import STAGE_COMMANDS

        raise Unavailable(f"no {stage}/shard-*.parquet in {ctx_run_root}; run `{STAGE_COMMANDS[stage]}` first")
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
    """Corpus documents with their byte sizes (text dropped after measuring; a snapshot stores n_bytes already)."""
    t = _read_shards(root, "corpus", ["id", "text", "source", "lang", "domain", "unit_id", "n_bytes"])
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
    plan_files = sorted(f for f in glob.glob(f"{ctx.run.root}/plans/*.json") if not Path(f).name.startswith("_"))
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


def token_counts(ctx: Context) -> Section:
    """The tokens stage's counts of the kept documents: tokens and bytes per token, per language and tokenizer."""
    data = _json(ctx, "tokens", "curated", "counts.json")
    toks = list(data["totals"])
    sec = Section("tokens", "Token counts of the curated corpus, by language and tokenizer")
    rows = [["language", "docs", "bytes", *toks, *[f"bytes/token {t}" for t in toks]]]
    per_token: dict[str, dict[str, float]] = {t: {} for t in toks}
    for lang, r in data["by_lang"].items():
        bpt = {t: round(r["bytes"] / r[t], 3) if r.get(t) else None for t in toks}
        rows.append([lang, r["docs"], r["bytes"], *[r.get(t, 0) for t in toks], *bpt.values()])
        for t, v in bpt.items():
            per_token[t][lang] = v or 0.0
    sec.tables.append(("Documents, bytes and tokens per language (kept documents, all splits)", rows))
    labels = sorted(data["by_lang"], key=lambda lang: per_token[toks[0]].get(lang, 0))
    sec.charts.append(
        charts.hbar(
            "tokens_bytes_per_token",
            "UTF-8 bytes per token by language (higher = fewer tokens for the same text)",
            labels,
            {t: [per_token[t].get(lab, 0.0) for lab in labels] for t in toks},
            xlabel="bytes per token",
            ylabel="language",
        )
    )
    where = data.get("where") or {}
    totals = ", ".join(f"{t} {n:,}" for t, n in data["totals"].items())
    sec.intro = esc(
        f"{data['docs']:,} documents in {data['shards']} shards: {totals} tokens. Counted on the "
        f"{where.get('executor', '?')} executor ({where.get('workers', '?')} workers"
        f"{', ' + str(where['address']) if where.get('address') else ''})."
    )
    sec.data = {"totals": data["totals"], "docs": data["docs"], "bytes_per_token": per_token, "where": where}
    return sec


def _json(ctx: Context, *parts: str) -> dict:
    return json.loads(ctx.need(*parts).read_text(encoding="utf-8"))


def _texts(root: str, ids: list[str], limit: int = 400) -> dict[str, str]:
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


def _example_list(examples: list[tuple[str, str]]) -> str:
    return "".join(f"<div class='ex' title='{esc(i)}'>{esc(t)}</div>" for i, t in examples)


def filters(ctx: Context) -> Section:
    summ = _json(ctx, "curated", "summary.json")
    sec = Section("filters", "Filters: kept and dropped per rule, overall and by language")
    steps = [r for r in summ["steps"] if r["group_by"] == "all"]
    tok = f"tokens_{summ['reference_tokenizer']}"
    thresholds = {r["name"]: r for r in summ.get("rules", [])}
    rows = [["step", "signal", "threshold", "docs in", "docs dropped", "drop %", "tokens dropped", "chars dropped"]]
    for r in steps:
        rule = thresholds.get(r["step"], {})
        thr = f"{rule.get('drop_if', '')} {rule.get('threshold')}" if rule else ""
        rows.append(
            [
                r["step"],
                rule.get("signal", ""),
                thr,
                r["docs_in"],
                r["docs_dropped"],
                100 * r["docs_dropped_share"],
                r.get(f"{tok}_dropped", 0),
                r.get("chars_dropped", 0),
            ]
        )
    sec.tables.append((f"Per-step table (tokens under {summ['reference_tokenizer']})", rows))
    by_lang = [r for r in summ["steps"] if r["group_by"] == "lang"]
    langs = sorted({r["group"] for r in by_lang}, key=lambda g: -sum(r["docs_in"] for r in by_lang if r["group"] == g))
    step_names = [r["step"] for r in steps]
    look = {(r["step"], r["group"]): r for r in by_lang}
    for measure, unit in (("docs", "documents"), (tok, "tokens")):
        vals = [
            [
                (look[(st, g)][f"{measure}_dropped"] / look[(st, g)][f"{measure}_in"])
                if (st, g) in look and look[(st, g)].get(f"{measure}_in")
                else None
                for g in langs[:30]
            ]
            for st in step_names
        ]
        sec.charts.append(
            charts.heatmap(
                f"filters_drop_rate_{'docs' if measure == 'docs' else 'tokens'}",
                f"Share of {unit} each rule drops, by language (% of what reaches the rule)",
                step_names,
                langs[:30],
                vals,
                xlabel="language",
                ylabel="rule",
            )
        )
    sec.data = {
        "input": summ["input"],
        "kept": summ["kept"],
        "dropped": summ["dropped"],
        "quarantined": summ["quarantined"],
        "token_cost": summ["token_cost"],
        "by_reason": summ["by_reason"],
    }
    sec.data["headline"] = (
        f"{summ['kept']:,} of {summ['input']:,} documents kept "
        f"({summ['dropped']:,} dropped, {summ['quarantined']:,} quarantined)"
    )
    sec.intro = esc(
        f"input = kept + dropped + quarantined: {summ['input']:,} = {summ['kept']:,} + "
        f"{summ['dropped']:,} + {summ['quarantined']:,} "
        f"({'reconciles' if summ['reconciles'] else 'DOES NOT reconcile'})."
    )
    return sec


def waterfall(ctx: Context) -> Section:
    summ = _json(ctx, "curated", "summary.json")
    tok = f"tokens_{summ['reference_tokenizer']}"
    steps = [r for r in summ["steps"] if r["group_by"] == "all"]
    sec = Section("waterfall", "Drop waterfall: documents and tokens in → out at each step")
    for measure, unit in (("docs", "documents"), (tok, "tokens")):
        seq = [("input", steps[0][f"{measure}_in"])] + [
            (r["step"] if r["step"] != "signals" else "quarantined", r[f"{measure}_dropped"]) for r in steps
        ]
        sec.charts.append(
            charts.waterfall(
                f"waterfall_{'docs' if measure == 'docs' else 'tokens'}",
                f"{unit.capitalize()} in → out by step",
                seq,
                xlabel=unit,
            )
        )
    by_lang = [r for r in summ["steps"] if r["group_by"] == "lang"]
    langs = sorted({r["group"] for r in by_lang})
    rows = [["language", "docs in", *[r["step"] for r in steps], "docs kept"]]
    for g in langs:
        rs = [r for r in by_lang if r["group"] == g]
        rows.append([g, rs[0]["docs_in"], *[r["docs_dropped"] for r in rs], rs[-1]["docs_kept"]])
    sec.tables.append(("Documents dropped at each step, by language", rows))
    sec.html_parts.append(_decision_examples(ctx))
    return sec


def _decision_examples(ctx: Context, per_reason: int = 2) -> str:
    import random

    d = pq.read_table(ctx.need("curated", "decisions.parquet"), columns=["id", "status", "reason"]).to_pylist()
    rng = random.Random(ctx.seed)
    groups: dict[str, list[str]] = {}
    for r in d:
        groups.setdefault(r["reason"] or r["status"], []).append(r["id"])
    picks = {g: rng.sample(ids, min(per_reason, len(ids))) for g, ids in sorted(groups.items())}
    texts = _texts(ctx.run.root, [i for v in picks.values() for i in v])
    parts = [f"<h3>Examples per outcome (seed {ctx.seed})</h3>"]
    for g, ids in picks.items():
        parts.append(
            f"<details><summary>{esc(g)} ({len(groups[g]):,} documents)</summary>"
            f"{_example_list([(i, texts.get(i, '')) for i in ids])}</details>"
        )
    return "".join(parts)


def histograms(ctx: Context) -> Section:
    hists = _json(ctx, "curated", "histograms.json")
    sec = Section("histograms", "Score histograms with thresholds and examples around them")
    ruled = [k for k, v in hists.items() if "threshold" in v]
    others = [k for k in hists if k not in ruled and not k.startswith(("tokens_", "n_", "dup_"))]
    sig_files = sorted(glob.glob(f"{ctx.run.root}/signals/shard-*.parquet"))
    for col in ruled + others[:12]:
        h = hists[col]
        label = f"rule {h['rule']} drops {'below' if h.get('drop_if') == 'lt' else 'above'}" if col in ruled else ""
        ch = charts.histogram(
            f"hist_{col}",
            f"{col}: distribution over documents",
            h["hist"],
            h["bin_edges"],
            xlabel=col,
            threshold=h.get("threshold"),
            threshold_label=label,
        )
        sec.charts.append(ch)
        if col in ruled and sig_files:
            sec.html_parts.append(_threshold_examples(ctx, sig_files, col, h))
    sec.data = {k: {kk: v[kk] for kk in v if kk not in ("hist", "bin_edges")} for k, v in hists.items()}
    return sec


def _threshold_examples(ctx: Context, files: list[str], col: str, h: dict, n: int = 2) -> str:
    parts = []
    for f in files:
        if col in pq.read_schema(f).names:
            parts.append(pq.read_table(f, columns=["id", col]))
    if not parts:
        return ""
    t = pa.concat_tables(parts).filter(pc.is_finite(pc.cast(pa.concat_tables(parts)[col], pa.float64())))
    thr = h["threshold"]
    below = t.filter(pc.less(t[col], thr)).sort_by([(col, "descending")]).slice(0, n).to_pylist()
    above = t.filter(pc.greater_equal(t[col], thr)).sort_by([(col, "ascending")]).slice(0, n).to_pylist()
    texts = _texts(ctx.run.root, [r["id"] for r in below + above])
    fmt = lambda rows: _example_list([(r["id"], f"[{col}={r[col]:.4g}] {texts.get(r['id'], '')}") for r in rows])  # noqa: E731
    return (
        f"<details><summary>Documents just below and just above {esc(col)} = {thr}</summary>"
        f"<p class='note'>just below</p>{fmt(below)}<p class='note'>just above</p>{fmt(above)}</details>"
    )


def duplicates(ctx: Context) -> Section:
    files = sorted(glob.glob(f"{ctx.run.root}/signals/dedup/shard-*.parquet"))
    if not files:
        raise Unavailable("no signals/dedup/shard-*.parquet; run `tokenwise curate dedup`")
    t = pa.concat_tables([pq.read_table(f) for f in files])
    rows = t.to_pylist()
    sizes: dict[int, int] = {}
    members: dict[int, list[str]] = {}
    for r in rows:
        if r["dup_cluster_size"] > 1:
            sizes[r["dup_cluster_id"]] = r["dup_cluster_size"]
            members.setdefault(r["dup_cluster_id"], []).append(r["id"])
    sec = Section("duplicates", "Duplicate clusters")
    dist: dict[int, int] = {}
    for sz in sizes.values():
        dist[sz] = dist.get(sz, 0) + 1
    ks = sorted(dist)
    sec.charts.append(
        charts.hbar(
            "dup_cluster_sizes",
            "Number of duplicate clusters by cluster size",
            [str(k) for k in ks],
            {"clusters": [dist[k] for k in ks]},
            xlabel="clusters",
            ylabel="cluster size (documents)",
        )
    )
    n_dup = sum(1 for r in rows if not r["dup_is_representative"])
    n_exact = sum(1 for r in rows if r["dup_exact"])
    sec.data = {
        "documents": len(rows),
        "clusters": len(sizes),
        "non_representative": n_dup,
        "exact_duplicates": n_exact,
        "headline": f"{len(sizes):,} clusters; {n_dup:,} documents are non-representative duplicates",
    }
    sec.intro = esc(
        f"{len(rows):,} documents, {len(sizes):,} clusters of size > 1, {n_dup:,} non-representative "
        f"members, {n_exact:,} exact duplicates."
    )
    top = sorted(members, key=lambda c: -sizes[c])[:3]
    texts = _texts(ctx.run.root, [i for c in top for i in members[c][:3]], limit=200)
    for c in top:
        sec.html_parts.append(
            f"<details><summary>cluster {c} ({sizes[c]} documents)</summary>"
            f"{_example_list([(i, texts.get(i, '')) for i in members[c][:3]])}</details>"
        )
    return sec


def tpsu(ctx: Context) -> Section:
    data = _json(ctx, "curated", "tpsu.json")
    sec = Section("tpsu", "Tokens per semantic unit and premium vs English")
    matrix = data["premium_matrix"]
    toks = list(matrix)
    langs = sorted(
        {lg for m in matrix.values() for lg in m if lg != data.get("reference_lang", "en")},
        key=lambda lg: -max((matrix[t].get(lg) or 0) for t in toks),
    )
    sec.charts.append(
        charts.hbar(
            "tpsu_premium",
            "Premium vs English on parallel units (tokens(lang) / tokens(en)), sorted",
            langs[:45],
            {t: [matrix[t].get(lg) for lg in langs[:45]] for t in toks},
            xlabel="premium (× English tokens)",
            ylabel="language",
            ref=1.0,
            ref_label="parity",
        )
    )
    rows = [["language", "domain", "tokenizer", "units", "TPSU", "TPSU (en)", "premium", "95% CI", "median unit"]]
    for r in sorted(data["premium"], key=lambda r: (r["tokenizer"], -(r["premium"] or 0))):
        if r["domain"] == "all":
            rows.append(
                [
                    r["lang"],
                    r["domain"],
                    r["tokenizer"],
                    r["n_units"],
                    r["tpsu"],
                    r["tpsu_en"],
                    r["premium"],
                    f"[{r['premium_ci_low']:.3g}, {r['premium_ci_high']:.3g}]",
                    r["premium_median_unit"],
                ]
            )
    sec.tables.append(("TPSU per language × tokenizer (parallel units only)", rows))
    if data.get("monolingual"):
        mono = [["language", "domain", "tokenizer", "docs", "est. units", "TPSU (estimate)", "bytes/unit CV"]] + [
            [m["lang"], m["domain"], m["tokenizer"], m["docs"], m["est_units"], m["tpsu_est"], m["bpu_cv"]]
            for m in data["monolingual"][:60]
        ]
        sec.tables.append(
            ("Monolingual text: units estimated from bytes (an estimate; spread in the last column)", mono)
        )
    sec.intro = esc(data.get("definition", ""))
    sec.data = {"premium_matrix": matrix}
    worst = {
        t: max(((lg, p) for lg, p in matrix[t].items() if p), key=lambda x: x[1], default=(None, None)) for t in toks
    }
    sec.data["headline"] = "; ".join(f"{t}: worst {lg} ×{p:.2f}" for t, (lg, p) in worst.items() if p)
    return sec


def plans(ctx: Context) -> Section:
    files = sorted(f for f in glob.glob(f"{ctx.run.root}/plans/*.json") if not Path(f).name.startswith("_"))
    if not files:
        raise Unavailable(f"no plans/*.json in {ctx.run.root}; run `tokenwise curate plan` first")
    sec = Section("plans", "Sampling plans for the token budget")
    plans_ = {Path(f).stem: json.loads(Path(f).read_text()) for f in files}
    langs = sorted(
        {lg for p in plans_.values() for lg in p["languages"]},
        key=lambda lg: -max(p["languages"].get(lg, {}).get("weight", 0) for p in plans_.values()),
    )
    sec.charts.append(
        charts.hbar(
            "plans_weights",
            "Sampling weight per language under each plan",
            langs[:45],
            {n: [100 * p["languages"].get(lg, {}).get("weight", 0) for lg in langs[:45]] for n, p in plans_.items()},
            xlabel="share of the token budget (%)",
            ylabel="language",
        )
    )
    sec.charts.append(
        charts.hbar(
            "plans_epochs",
            "Epochs over each language's data under each plan",
            langs[:45],
            {n: [p["languages"].get(lg, {}).get("epochs", 0) for lg in langs[:45]] for n, p in plans_.items()},
            xlabel="epochs",
            ylabel="language",
        )
    )
    rows = [["plan", "method", "alpha", "max epochs", "budget", "tokenizer", "planned tokens", "budget met"]]
    for n, p in plans_.items():
        rows.append(
            [
                n,
                p["method"],
                p.get("alpha"),
                p.get("max_epochs"),
                p["budget"],
                p["tokenizer"],
                p["planned_tokens"],
                p["budget_met"],
            ]
        )
    sec.tables.append(("Plans", rows))
    first = next(iter(plans_.values()))
    if first.get("comparison"):
        comp = [["language", "tokenizer", "weight", "tokens", "bytes", "weight Δ vs plan tokenizer"]] + [
            [c["lang"], c["tokenizer"], c["weight"], c["tokens"], c["bytes"], c["weight_delta"]]
            for c in first["comparison"][:80]
        ]
        sec.tables.append((f"How plan “{first['name']}” shifts when the tokenizer changes (same text)", comp))
    sec.data = {n: {lg: v.get("weight") for lg, v in p["languages"].items()} for n, p in plans_.items()}
    return sec


def economics(ctx: Context) -> Section:
    data = _json(ctx, "curated", "economics.json")
    sec = Section("economics", "Language economics: serving natively vs translating to English first")
    rows = [
        [
            "language",
            "tokenizer",
            "units",
            "premium",
            "native tokens",
            "translate-first tokens",
            "translate / native",
            "cheaper",
        ]
    ]
    for r in sorted(data["rows"], key=lambda r: (r["tokenizer"], -(r["premium"] or 0))):
        rows.append(
            [
                r["lang"],
                r["tokenizer"],
                r["n_units"],
                r["premium"],
                r["native_tokens"],
                r["translate_tokens"],
                r["translate_over_native"],
                r["cheaper"],
            ]
        )
    sec.tables.append(("Native vs translate-first cost per language (tokens on the same parallel units)", rows))
    sec.intro = esc(f"{data.get('definition', '')} Break-even premium: {data.get('break_even_premium')}.")
    sec.data = {"break_even_premium": data.get("break_even_premium"), "rows": data["rows"]}
    return sec


def tokenizers(ctx: Context) -> Section:
    rep = _json(ctx, "tokenizers", "eval.json")
    from curation.tokenizer_eval import premium_table

    sec = Section("tokenizers", "Tokenizers: premium vs English and tokens saved on held-out text")
    names = list(rep["results"])
    prem = premium_table(rep)
    num = lambda v: v if isinstance(v, int | float) else None  # noqa: E731
    prem = [r for r in prem if any(num(r[n]) is not None for n in names) and r["language"] != "eng_Latn"]
    ref = rep.get("reference") or names[0]
    prem.sort(key=lambda r: -(num(r.get(ref)) or 0))
    labels = [r["language"] for r in prem[:40]]
    sec.charts.append(
        charts.hbar(
            "tokenizers_premium",
            "Premium vs English on parallel held-out units (tokens(lang) / tokens(eng_Latn))",
            labels,
            {n: [num(r[n]) for r in prem[:40]] for n in names},
            xlabel="premium (× English tokens)",
            ylabel="language",
            ref=1.0,
            ref_label="parity",
        )
    )
    rows = [
        [
            "tokenizer",
            "vocab",
            "premium max",
            "worst language",
            "premium mean",
            "fairness Gini",
            "unk max",
            "round-trip failures",
            *[
                k
                for k in next(iter(rep["results"].values()))["summary"]
                if k.startswith("tokens_saved_vs_") and k.count("_") <= 4
            ],
        ]
    ]
    for n, res in rep["results"].items():
        sm = res["summary"]
        rows.append(
            [
                n,
                res["vocab_size"],
                sm.get("premium_max"),
                sm.get("premium_worst_language"),
                sm.get("premium_mean"),
                sm.get("fairness_gini"),
                sm.get("unk_rate_max"),
                sm.get("roundtrip_failures"),
                *[sm.get(k) for k in rows[0][8:]],
            ]
        )
    sec.tables.append(
        ("Summary per tokenizer (savings are 1 − tokens/reference tokens on the same held-out bytes)", rows)
    )
    sec.data = {"premium": prem, "summary": {n: r["summary"] for n, r in rep["results"].items()}}
    best = min(names, key=lambda n: rep["results"][n]["summary"].get("premium_max") or 1e9)
    sec.data["headline"] = (
        f"lowest worst-language premium: {best} ({rep['results'][best]['summary'].get('premium_max')})"
    )
    return sec


def measurement(ctx: Context) -> Section:
    summ = _json(ctx, "measure", "summary.json")
    from serving.measure.ledger import read_ledger

    rows = read_ledger(str(ctx.need("measure", "ledger.parquet")))
    base = summ["baseline"]
    sec = Section("measurement", f"Measured savings vs baseline “{base}”, with quality beside them")
    stacks = summ["stacks"]
    names = list(stacks)
    t = [
        [
            "stack",
            "lever",
            "billed tokens",
            "saved tokens %",
            "cost USD",
            "saved cost %",
            "target fwd / out token",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TPOT p50 ms",
            "goodput req/s",
            "bits/byte",
            "bits/byte Δ%",
            "chrF",
            "chrF Δ",
        ]
    ]
    for n, x in stacks.items():
        t.append(
            [
                n,
                x["lever"],
                x["billed_tokens"],
                100 * x["saved_tokens_share"],
                x["spend"],
                100 * x["saved_spend_share"],
                x["forward_passes_per_output_token"],
                x["ttft_ms"]["p50"],
                x["ttft_ms"]["p99"],
                x["tpot_ms"]["p50"],
                x["goodput"]["goodput_rps"],
                x["bits_per_byte_mean"],
                100 * x["bits_per_byte_delta_rel"],
                x["quality_mean"],
                x["quality_delta"],
            ]
        )
    sec.tables.append((f"Every stack on the same {summ['requests']} held-out requests (same output bytes)", t))
    levers = summ["levers"]
    sec.charts.append(
        charts.hbar(
            "measure_savings_per_lever",
            "Billed tokens saved by each lever (added one at a time)",
            [lv["lever"] for lv in levers],
            {"tokens saved": [lv["billed_tokens_saved"] for lv in levers]},
            xlabel="tokens saved on the request set",
            ylabel="lever",
        )
    )
    langs = sorted({g["language"] for g in summ["by_language"]})
    share = {(g["stack"], g["language"]): 100 * g["saved_tokens_share"] for g in summ["by_language"]}
    opt = names[-1]
    sec.charts.append(
        charts.hbar(
            "measure_savings_per_language",
            f"Billed tokens saved per language: {opt} vs {base}",
            langs,
            {opt: [share.get((opt, lg)) for lg in langs]},
            xlabel="tokens saved (% of baseline)",
            ylabel="language",
        )
    )
    from curation.report.charts import cdf_series

    for cid, title, key, xlabel in (
        ("measure_latency_cdf", "Request latency CDF per stack", "request_duration_ms", "request duration (ms)"),
        ("measure_ttft_cdf", "Time to first token CDF per stack", "ttft_ms", "TTFT (ms)"),
    ):
        ok = {n: [r[key] for r in rows if r["stack"] == n and r["status"] == "success"] for n in names}
        series = {n: cdf_series(v) for n, v in ok.items()}
        sec.charts.append(charts.lines(cid, title, series, xlabel=xlabel, ylabel="share of requests"))
    sec.charts.append(
        charts.lines(
            "measure_cost_quality",
            "Cost vs quality per stack (bits per byte: lower is better)",
            {
                n: ([stacks[n]["spend"] * 1e6 / max(1, stacks[n]["requests"])], [stacks[n]["bits_per_byte_mean"]])
                for n in names
            },
            xlabel="cost per million requests (USD)",
            ylabel="bits per byte",
            points=True,
        )
    )
    sec.data = {
        "baseline": base,
        "stacks": {n: {k: v for k, v in x.items() if not isinstance(v, dict)} for n, x in stacks.items()},
        "levers": levers,
    }
    last = stacks[opt]
    sec.data["headline"] = (
        f"{opt} vs {base}: {100 * last['saved_tokens_share']:.1f}% tokens and "
        f"{100 * last['saved_spend_share']:.1f}% cost saved, bits/byte "
        f"{100 * last['bits_per_byte_delta_rel']:+.1f}%"
    )
    sec.intro = esc(sec.data["headline"] + ". Savings count the same requests and the same output bytes.")
    return sec


def diff(ctx: Context) -> Section:
    if ctx.previous is None:
        raise Unavailable("no previous run given (tokenwise report --previous DIR, or the refresh flow's last run)")
    prev_root, root = ctx.previous.root, ctx.run.root
    sec = Section("diff", "What changed since the previous run")
    now_t = _read_shards(root, "corpus", ["id", "source"])
    try:
        prev_t = _read_shards(prev_root, "corpus", ["id", "source"])
    except Unavailable as e:
        raise Unavailable(f"previous run has no corpus: {e}") from None
    now_ids = dict(zip(now_t["id"].to_pylist(), now_t["source"].to_pylist(), strict=True))
    prev_ids = dict(zip(prev_t["id"].to_pylist(), prev_t["source"].to_pylist(), strict=True))
    per_source: dict[str, list[int]] = {}
    for i, src in now_ids.items():
        if i not in prev_ids:
            per_source.setdefault(src, [0, 0])[0] += 1
    for i, src in prev_ids.items():
        if i not in now_ids:
            per_source.setdefault(src, [0, 0])[1] += 1
    rows = [["source", "new documents", "removed documents"]] + [
        [src, a, b] for src, (a, b) in sorted(per_source.items(), key=lambda kv_: -(kv_[1][0] + kv_[1][1]))
    ]
    sec.tables.append(("New and removed documents per source (by document id)", rows))
    shares_now = _shares(corpus_table(root), "lang", "n_bytes")
    shares_prev = _shares(corpus_table(prev_root), "lang", "n_bytes")
    langs = sorted(
        set(shares_now) | set(shares_prev), key=lambda k: -abs(shares_now.get(k, 0) - shares_prev.get(k, 0))
    )
    shift = [100 * (shares_now.get(k, 0) - shares_prev.get(k, 0)) for k in langs[:30]]
    sec.charts.append(
        charts.hbar(
            "diff_language_shift",
            "Change in each language's share of corpus bytes",
            langs[:30],
            {"Δ share (percentage points)": [abs(x) for x in shift]},
            xlabel="|Δ share| (percentage points)",
            ylabel="language",
        )
    )
    sec.charts[-1].rows = [["language", "previous share %", "share %", "delta pp"]] + [
        [k, 100 * shares_prev.get(k, 0), 100 * shares_now.get(k, 0), d] for k, d in zip(langs[:30], shift, strict=True)
    ]
    drop_rows = [["step", "previous drop %", "drop %", "delta pp"]]
    p_sum, n_sum = Path(prev_root, "curated", "summary.json"), Path(root, "curated", "summary.json")
    if p_sum.exists() and n_sum.exists():
        prev_steps = {r["step"]: r for r in json.loads(p_sum.read_text())["steps"] if r["group_by"] == "all"}
        for r in (r for r in json.loads(n_sum.read_text())["steps"] if r["group_by"] == "all"):
            p = prev_steps.get(r["step"], {}).get("docs_dropped_share")
            now = r["docs_dropped_share"]
            drop_rows.append(
                [r["step"], None if p is None else 100 * p, 100 * now, None if p is None else 100 * (now - p)]
            )
        sec.tables.append(("Drop rate per rule, previous vs this run", drop_rows))
    added = sum(a for a, _ in per_source.values())
    removed = sum(b for _, b in per_source.values())
    sec.data = {
        "new_documents": added,
        "removed_documents": removed,
        "per_source": per_source,
        "language_share_delta_pp": dict(zip(langs[:30], shift, strict=True)),
        "drop_rates": drop_rows[1:],
        "headline": f"{added:,} new and {removed:,} removed documents since {prev_root}",
    }
    sec.intro = esc(sec.data["headline"])
    return sec


SECTIONS = [
    ("overview", "Corpus overview", overview),
    ("languages", "Language distribution", languages),
    ("tokens", "Token counts", token_counts),
    ("tpsu", "Tokens per semantic unit", tpsu),
    ("plans", "Sampling plans", plans),
    ("economics", "Language economics", economics),
    ("filters", "Filters by rule and language", filters),
    ("waterfall", "Drop waterfall", waterfall),
    ("histograms", "Score histograms", histograms),
    ("duplicates", "Duplicate clusters", duplicates),
    ("tokenizers", "Tokenizers and premiums", tokenizers),
    ("measurement", "Measured savings", measurement),
    ("diff", "Changes since the previous run", diff),
]
