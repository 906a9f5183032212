"""`tokenwise measure` through a batching server: prompt tokens served from the prefix cache reach the ledger."""

import textwrap

import pyarrow as pa
import pyarrow.parquet as pq

from serving.decode.tiny import make_tiny_llama, stdlib_texts, train_tokenizer
from serving.measure.ledger import read_ledger
from serving.measure.run import run_measure
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.splits import is_heldout

HEADER = "# Copyright (c) the authors. Licensed under the same terms as the Python standard library.\n" * 2


def test_cached_prompt_tokens_reach_the_ledger(tmp_path):
    texts = stdlib_texts(30)
    tok = train_tokenizer(texts, tmp_path / "tok", vocab_size=384)
    make_tiny_llama(tmp_path / "run/models/small", tok, 32, 1, seed=1)
    make_tiny_llama(tmp_path / "run/models/large", tok, 64, 2, seed=2)
    # every document opens with the same licence header: the prompts share a prefix, as system prompts do
    docs = [{"id": f"d{i}", "text": HEADER + t, "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
            for i, t in enumerate(stdlib_texts(60, skip=40))]  # fmt: skip
    assert sum(is_heldout(d["id"]) for d in docs) >= 3
    (tmp_path / "run/curated").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(docs, schema=CORPUS_SCHEMA), tmp_path / "run/curated/shard-00000.parquet")
    cfg = tmp_path / "measure.yaml"
    cfg.write_text(
        textwrap.dedent("""
        serve:
          models:
            - {name: small, path: "{run}/models/small", price_input_per_1m: 0.1, price_output_per_1m: 0.2}
            - {name: large, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0}
        measure:
          requests: 3
          prompt_bytes: 260
          reference_bytes: 40
          max_tokens: 4
          concurrency: 1
          models:
            - {name: small, path: "{run}/models/small", price_input_per_1m: 0.1, price_output_per_1m: 0.2}
            - {name: large, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0}
            - {name: large_batched, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0,
               batching: {enabled: true, block_size: 8}}
          stacks:
            - {name: baseline, lever: baseline, model: large, serve_models: [small, large]}
            - {name: batched, lever: batching, model: large_batched, serve_models: [small, large_batched]}
    """)
    )
    run_measure(str(cfg), str(tmp_path / "run"))
    rows = read_ledger(str(tmp_path / "run/measure/ledger.parquet"))
    batched = sorted((r for r in rows if r["stack"] == "batched"), key=lambda r: r["startTime"])
    baseline = [r for r in rows if r["stack"] == "baseline"]
    assert all(r["status"] == "success" for r in rows) and len(batched) == len(baseline) == 3
    assert all(r["cache_read_input_tokens"] == 0 for r in baseline)
    assert batched[0]["cache_read_input_tokens"] == 0  # the first request fills the cache
    assert all(0 < r["cache_read_input_tokens"] < r["prompt_tokens"] for r in batched[1:])
    assert [r["completion_text"] for r in sorted(batched, key=lambda r: r["request_id"])] == [
        r["completion_text"] for r in sorted(baseline, key=lambda r: r["request_id"])
    ]  # same answers with and without batching
