"""Report section "Score histograms" (outputs of the decide stage)."""

from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from report import charts
from report.context import Context
from report.html import Section, esc
from report.tables import example_list, stage_json, texts_by_id


def histograms(ctx: Context) -> Section:
    hists = stage_json(ctx, "curated", "histograms.json")
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
    texts = texts_by_id(ctx.run.root, [r["id"] for r in below + above])
    fmt = lambda rows: example_list([(r["id"], f"[{col}={r[col]:.4g}] {texts.get(r['id'], '')}") for r in rows])  # noqa: E731
    return (
        f"<details><summary>Documents just below and just above {esc(col)} = {thr}</summary>"
        f"<p class='note'>just below</p>{fmt(below)}<p class='note'>just above</p>{fmt(above)}</details>"
    )
