"""Report section "Changes since the previous run" (outputs of the corpus stage)."""

from __future__ import annotations

import json
from pathlib import Path

from report import charts
from report.context import Context, Unavailable
from report.html import Section, esc
from report.tables import corpus_table, read_shards, shares


def diff(ctx: Context) -> Section:
    if ctx.previous is None:
        raise Unavailable("no previous run given (tokenwise report --previous DIR, or the refresh flow's last run)")
    prev_root, root = ctx.previous.root, ctx.run.root
    sec = Section("diff", "What changed since the previous run")
    now_t = read_shards(root, "corpus", ["id", "source"])
    try:
        prev_t = read_shards(prev_root, "corpus", ["id", "source"])
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
    shares_now = shares(corpus_table(root), "lang", "n_bytes")
    shares_prev = shares(corpus_table(prev_root), "lang", "n_bytes")
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
