"""`tokenwise measure` against live servers on 127.0.0.1 with tiny real models: ledger, counterfactuals, CLI."""

import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.decode.tiny import make_tiny_llama, stdlib_texts, train_tokenizer
from serving.measure.ledger import read_ledger
from serving.measure.run import run_measure
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.splits import is_heldout


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("measure")
    texts = stdlib_texts(40)
    tok = train_tokenizer(texts, root / "tok", vocab_size=384)
    ref_tok = train_tokenizer(texts[:5], root / "reftok", vocab_size=280)
    make_tiny_llama(root / "run/models/small", tok, 32, 1, seed=1)
    make_tiny_llama(root / "run/models/large", tok, 64, 2, seed=2)
    make_tiny_llama(root / "run/models/large_ref", ref_tok, 64, 2, seed=2)
    docs = [{"id": f"d{i}", "text": t, "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
            for i, t in enumerate(stdlib_texts(120, skip=40))]  # fmt: skip
    assert sum(is_heldout(d["id"]) for d in docs) >= 4
    (root / "run/curated").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(docs, schema=CORPUS_SCHEMA), root / "run/curated/shard-00000.parquet")
    cfg = root / "measure.yaml"
    cfg.write_text(
        textwrap.dedent("""
        serve:
          models:
            - {name: small, path: "{run}/models/small", price_input_per_1m: 0.1, price_output_per_1m: 0.2}
            - {name: large, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0}
          router: {threshold: -3.0, preview_tokens: 4}
        measure:
          requests: 4
          prompt_bytes: 120
          reference_bytes: 80
          max_tokens: 6
          concurrency: 2
          models:
            - {name: small, path: "{run}/models/small", price_input_per_1m: 0.1, price_output_per_1m: 0.2}
            - {name: large, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0}
            - {name: large_ref, path: "{run}/models/large_ref", price_input_per_1m: 1.0, price_output_per_1m: 2.0}
            - {name: large_spec, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0,
               speculative: {method: draft, draft: "{run}/models/small", k: 2, auto_off_after: 1}}
          stacks:
            - {name: baseline, lever: baseline, model: large_ref, serve_models: [small, large_ref]}
            - {name: baseline_again, lever: none, model: large_ref, serve_models: [small, large_ref]}
            - {name: tok, lever: tokenizer, model: large, serve_models: [small, large]}
            - {name: routed, lever: routing, model: auto, serve_models: [small, large]}
            - {name: spec, lever: speculation, model: large_spec, serve_models: [small, large_spec]}
            - {name: small_only, lever: always_small, model: small, serve_models: [small, large], after: tok}
    """)
    )
    summary = run_measure(str(cfg), str(root / "run"))
    return root, summary


def test_ledger_rows_and_totals(measured):
    root, summary = measured
    rows = read_ledger(str(root / "run/measure/ledger.parquet"))
    assert len(rows) == 6 * summary["requests"] and all(r["status"] == "success" for r in rows)
    assert rows == read_ledger(str(root / "run/measure/ledger.jsonl"))
    for name, t in summary["stacks"].items():
        mine = [r for r in rows if r["stack"] == name]
        assert t["billed_tokens"] == sum(r["total_tokens"] for r in mine)
        assert t["spend"] == pytest.approx(sum(r["spend"] for r in mine))
        assert t["saved_tokens"] == pytest.approx(sum(r["saved_tokens"] for r in mine))
        assert t["baseline"] == "baseline"
    for r in rows:
        assert r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"]
        assert r["spend"] == pytest.approx(r["spend_prompt"] + r["spend_completion"])
        assert r["reference_tokenizer"] == "cl100k_base" and r["reference_prompt_tokens"] > 0


def test_every_lever_off_reproduces_the_baseline(measured):
    _, summary = measured
    base, again = summary["stacks"]["baseline"], summary["stacks"]["baseline_again"]
    assert again["saved_tokens"] == base["saved_tokens"] and again["saved_spend"] == pytest.approx(base["saved_spend"])
    assert again["quality_delta"] == 0 and again["bits_per_byte_delta_rel"] == 0
    none = summary["levers"][0]
    assert none["lever"] == "none" and none["saved_tokens_share"] == 0 and none["billed_tokens_saved"] == 0


def test_savings_count_each_stacks_own_text_with_the_baseline_tokenizer(measured):
    """Recount the ledger from the text it keeps: the baseline stack's tokenizer (large_ref's) on every row's prompt
    and completion, priced at the baseline model; per language and per domain on the same basis."""
    from tokenwise.tokenizer_specs import load_tokenizer

    root, summary = measured
    tok = load_tokenizer(f"hf:{root / 'run/models/large_ref'}")
    rows = read_ledger(str(root / "run/measure/ledger.parquet"))
    for r in rows:
        assert r["baseline_prompt_tokens"] == len(tok.encode(r["prompt_text"]))
        assert r["baseline_completion_tokens"] == len(tok.encode(r["completion_text"]))
        assert r["saved_tokens"] == r["baseline_total_tokens"] - r["total_tokens"]
        assert r["baseline_model"] == "large_ref" and r["baseline_tokenizer"] == "large_ref:large_ref"
    tok_stack = summary["stacks"]["tok"]
    mine = [r for r in rows if r["stack"] == "tok"]
    assert tok_stack["baseline_tokens"] == sum(r["baseline_total_tokens"] for r in mine)
    assert tok_stack["saved_tokens_share"] == pytest.approx(
        1 - sum(r["total_tokens"] for r in mine) / sum(r["baseline_total_tokens"] for r in mine)
    )
    assert {g["language"] for g in summary["by_language"]} == {"en"} and "en" in summary["levers_by_language"]
    assert [lv["lever"] for lv in summary["levers_by_domain"]["code"]] == [lv["lever"] for lv in summary["levers"]]
    for g in summary["by_language"]:
        assert "quality_delta" in g and "bits_per_byte_delta_rel" in g


def test_speculation_reports_prediction_and_auto_off(measured):
    root, summary = measured
    sp = summary["stacks"]["spec"]["speculative"]
    assert sp["v"] > 0 and sp["c"] > 0 and sp["predicted_speedup"] > 0 and sp["measured_speedup_vs"] == "routed"
    rows = [r for r in read_ledger(str(root / "run/measure/ledger.parquet")) if r["stack"] == "spec"]
    drafted = [r for r in rows if r["draft_tokens_proposed"]]
    # c and v measured for the pair at load, interpolated at each request's context length
    assert all(r["spec_v"] > 0 and r["spec_c"] > 0 for r in drafted)
    assert sp["v"] == pytest.approx(sum(r["spec_v"] for r in drafted) / len(drafted))
    assert sp["auto_off_requests"] == sum(r["spec_auto_off"] for r in rows)
    for r in rows:  # a request that switched itself off says where, and its acceptance predicted a loss
        assert (r["spec_auto_off_at_token"] is not None) == r["spec_auto_off"]
    assert "switched itself off" in (root / "run/measure/summary.md").read_text()


def test_tokenizer_lever_and_routing_recorded(measured):
    root, summary = measured
    tok = summary["stacks"]["tok"]
    # the same prompt bytes cost fewer tokens under the larger-vocabulary tokenizer
    assert tok["prompt_tokens"] < summary["stacks"]["baseline"]["prompt_tokens"]
    routed = summary["stacks"]["routed"]
    assert sum(routed["routed_models"].values()) == summary["requests"]
    assert [lv["lever"] for lv in summary["levers"]] == ["none", "tokenizer", "routing", "speculation", "always_small"]
    side = summary["levers"][-1]  # a side stack is measured against its `after` stack, not the one listed before it
    assert (side["from_stack"], side["to_stack"]) == ("tok", "small_only")
    assert summary["stacks"]["small_only"]["after"] == "tok" and summary["stacks"]["spec"]["after"] is None
    md = (root / "run/measure/summary.md").read_text()
    assert "Savings vs baseline `baseline`" in md and "bits/byte" in md


def test_ledger_export_cli(measured, tmp_path):
    from typer.testing import CliRunner

    from tokenwise.cli import app

    root, _ = measured
    out = tmp_path / "lf.jsonl"
    res = CliRunner().invoke(
        app, ["ledger", "export", "--run", str(root / "run"), "--to", "langfuse", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    first = json.loads(out.read_text().splitlines()[0])
    assert first["type"] == "generation-create" and "usageDetails" in first["body"]


def test_report_section_shows_savings_per_lever_language_and_speculation(measured):
    from report.context import Context
    from report.sections.measurement import measurement
    from tokenwise.rundir import RunDir

    root, summary = measured
    sec = measurement(Context(RunDir(str(root / "run"))))
    captions = [c for c, _ in sec.tables]
    assert any("large_ref:large_ref on each stack's own prompt and completion text" in c for c in captions)
    lever_rows = next(t for c, t in sec.tables if c.startswith("Per lever"))
    assert lever_rows[0][-2:] == ["chrF Δ", "bits/byte Δ"] and len(lever_rows) == 1 + len(summary["levers"])
    assert lever_rows[2][2] == pytest.approx(100 * summary["levers"][1]["saved_tokens_share"])
    spec_rows = next(t for c, t in sec.tables if c.startswith("Speculation"))
    v = summary["stacks"]["spec"]["speculative"]["v"]
    assert spec_rows[1][0] == "spec" and spec_rows[1][4] == pytest.approx(v)
    assert "quality" in sec.intro and any(c.startswith("Per language") for c in captions)


def test_interleaved_stacks_take_turns_on_the_same_requests(measured, tmp_path):
    """measure.interleave: every stack's server up at once, the requests through the stacks in turns (the order
    rotating), the same ledger shape as one stack after another; stacks whose threads differ are refused."""
    import shutil

    import yaml

    root, summary = measured
    shutil.copytree(root / "run", tmp_path / "run", ignore=shutil.ignore_patterns("measure"))
    cfg = yaml.safe_load((root / "measure.yaml").read_text())
    cfg["measure"]["interleave"] = 2
    cfg["measure"]["stacks"] = cfg["measure"]["stacks"][:3]  # baseline, baseline_again, tok
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    inter = run_measure(str(tmp_path / "m.yaml"), str(tmp_path / "run"))
    rows = read_ledger(str(tmp_path / "run/measure/ledger.parquet"))
    assert len(rows) == 3 * summary["requests"] and all(r["status"] == "success" for r in rows)
    ids = [r["request_id"] for r in rows if r["stack"] == "baseline"]
    for name in ("baseline_again", "tok"):  # the same requests in the same order, the same greedy answers
        mine = [r for r in rows if r["stack"] == name]
        assert [r["request_id"] for r in mine] == ids
    again = {r["request_id"]: r["completion_text"] for r in rows if r["stack"] == "baseline_again"}
    assert all(again[r["request_id"]] == r["completion_text"] for r in rows if r["stack"] == "baseline")
    assert inter["stacks"]["tok"]["billed_tokens"] == summary["stacks"]["tok"]["billed_tokens"]
    start = {(r["stack"], r["request_id"]): r["startTime"] for r in rows}
    # turn 1 (requests 0-1): baseline first; turn 2 (requests 2-3) starts with baseline_again
    assert start[("tok", ids[1])] < start[("baseline", ids[2])]
    assert start[("baseline_again", ids[2])] < start[("baseline", ids[2])]
    cfg["measure"]["stacks"][1]["threads"], cfg["measure"]["stacks"][2]["threads"] = 1, 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="threads must agree"):
        run_measure(str(tmp_path / "bad.yaml"), str(tmp_path / "run"))
