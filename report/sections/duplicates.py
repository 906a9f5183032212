"""Report section "Duplicate clusters" (outputs of the dedup stage)."""

from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.parquet as pq

from report import charts
from report.context import Context, Unavailable
from report.html import Section, esc
from report.tables import example_list, texts_by_id


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
    texts = texts_by_id(ctx.run.root, [i for c in top for i in members[c][:3]], limit=200)
    for c in top:
        sec.html_parts.append(
            f"<details><summary>cluster {c} ({sizes[c]} documents)</summary>"
            f"{example_list([(i, texts.get(i, '')) for i in members[c][:3]])}</details>"
        )
    return sec
