"""Training/eval data: seeded shard interleaving keeps every document once per pass; the eval sample is spread over
the corpus, balanced by domain, held-out only and deterministic."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finetune.config import DataConfig
from finetune.data import eval_sets, eval_texts, iter_docs
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.splits import is_heldout


def _doc(i: int, source: str, domain: str, text: str | None = None) -> dict:
    return {
        "id": f"{source}:{i}",
        "text": text or f"{source} document {i} " + "x" * (i % 7),
        "source": source,
        "lang": "en",
        "domain": domain,
        "unit_id": f"{source}:{i}",
    }


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """Six shards, one source each (as the corpus stage writes them): three ui catalogs, two code, one docs."""
    out = tmp_path_factory.mktemp("data") / "curated"
    out.mkdir()
    layout = [("cat_a", "ui", 300), ("cat_b", "ui", 200), ("cat_c", "ui", 5), ("pkg_a", "code", 80),
              ("pkg_b", "code", 60), ("readme", "docs", 90)]  # fmt: skip
    for s, (source, domain, n) in enumerate(layout):
        rows = [_doc(i, source, domain) for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), out / f"shard-{s:05d}.parquet")
    return str(out)


def test_seeded_interleaving_reads_every_train_doc_once_and_mixes_sources(curated):
    data = DataConfig(curated=curated, mix_shards=4)
    plain = list(iter_docs(curated, "train", data))
    mixed = list(iter_docs(curated, "train", data, seed="0:0"))
    assert sorted(plain) == sorted(mixed) and len(set(mixed)) == len(mixed) > 0
    assert mixed == list(iter_docs(curated, "train", data, seed="0:0"))  # deterministic (resume re-reads it)
    assert mixed != list(iter_docs(curated, "train", data, seed="0:1"))  # each epoch its own order
    first = {t.split()[0] for t in mixed[:40]}
    assert len(first) >= 3, f"first 40 docs come from {first}: shards were not interleaved"
    assert {t.split()[0] for t in plain[:40]} == {"cat_a"}  # unseeded = shard order (what eval 'first' uses)


def test_spread_eval_is_heldout_balanced_by_domain_and_deterministic(curated):
    data = DataConfig(curated=curated, eval_docs=12, eval_max_chars=15)
    sets = eval_sets(curated, data)
    assert set(sets) == {"code", "docs", "ui"} and [len(v) for v in sets.values()] == [4, 4, 4]
    assert sets == eval_sets(curated, data)
    assert all(len(t) <= 15 for v in sets.values() for t in v)
    full = eval_sets(curated, data.model_copy(update={"eval_max_chars": None}))
    heldout = {d["text"] for s, dom, n in [("cat_a", "ui", 300), ("cat_b", "ui", 200), ("cat_c", "ui", 5),
               ("pkg_a", "code", 80), ("pkg_b", "code", 60), ("readme", "docs", 90)]
               for d in (_doc(i, s, dom) for i in range(n)) if is_heldout(d["id"], d["unit_id"])}  # fmt: skip
    assert all(t in heldout for v in full.values() for t in v)
    ui_sources = {t.split()[0] for t in full["ui"]}
    assert len(ui_sources) >= 2, "the ui share should not all come from the first catalog"
    flat = eval_texts(curated, data)  # round-robin: a prefix is balanced too
    assert sorted(flat) == sorted(t for v in sets.values() for t in v) and flat[:3] == [
        sets[d][0] for d in sorted(sets)
    ]


def test_a_short_domain_gives_its_share_to_the_others(curated):
    data = DataConfig(curated=curated, eval_docs=60, eval_max_chars=None)
    sets = eval_sets(curated, data)
    n_docs = sum(1 for i in range(90) if is_heldout(f"readme:{i}", f"readme:{i}"))
    assert n_docs < 20 and len(sets["docs"]) == n_docs
    assert sum(len(v) for v in sets.values()) == 60


def test_first_mode_keeps_shard_order(curated):
    data = DataConfig(curated=curated, eval_docs=5, eval_sample="first", eval_max_chars=None)
    sets = eval_sets(curated, data)
    assert list(sets) == ["ui"] and all(t.startswith("cat_a") for t in sets["ui"]) and len(sets["ui"]) == 5
