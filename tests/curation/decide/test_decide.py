"""Decisions from stored signals on real gettext + stdlib text: reasons, counts, what-if, datatrove stats."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus, write_signals
from _paths import FIXTURES

from curation.decide.decisions import DecideConfig, Rule, apply_sets, run_decide, run_whatif
from curation.signals.dedup import run_dedup
from tokenwise.documents import CORPUS_SCHEMA


def _cfg(**over) -> DecideConfig:
    rules = {
        "lang_low_score": Rule(signal="lid_score", drop_if="lt", threshold=0.6),
        "gopher_short_doc": Rule(signal="gopher_n_words", drop_if="lt", threshold=3),
        "quality_low": Rule(signal="quality_score", drop_if="lt", threshold=None),
    }
    return DecideConfig(rules=rules, **over)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    docs = stdlib_docs() + parallel_docs(limit=30)
    run = tmp_path_factory.mktemp("decide")
    write_corpus(run, docs, shard_size=50)
    write_signals(run, docs, shard_size=50)
    run_dedup(str(run))
    return run, docs


@pytest.fixture
def run(base_run, tmp_path):
    src, docs = base_run
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst, docs


def _total(v) -> float:
    """A datatrove MetricStats value as written (int) or merged (dict with total)."""
    return v if isinstance(v, (int, float)) else v["total"]


def _signals(run) -> list[dict]:
    return [r for f in sorted(run.glob("signals/shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_reasons_and_counts_reconcile(run):
    run, docs = run
    s = run_decide(str(run), _cfg())
    assert s["reconciles"] and s["input"] == len(docs) == s["kept"] + s["dropped"] + s["quarantined"]
    dec = {r["id"]: r for r in pq.read_table(run / "curated/decisions.parquet").to_pylist()}
    for sig in _signals(run):
        d = dec[sig["id"]]
        if sig["lid_score"] < 0.6:
            assert (d["status"], d["reason"]) == ("dropped", "lang_low_score")
        elif sig["gopher_n_words"] < 3:
            assert (d["status"], d["reason"]) == ("dropped", "gopher_short_doc")
        assert d["pass_lang_low_score"] == (sig["lid_score"] >= 0.6)
    kept = [r for f in sorted(run.glob("curated/shard-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert pq.read_schema(run / "curated/shard-00000.parquet") == CORPUS_SCHEMA
    assert sorted(r["id"] for r in kept) == sorted(i for i, d in dec.items() if d["keep"])


def test_token_cost_per_rule_is_tokens_removed(run):
    run, _ = run
    s = run_decide(str(run), _cfg())
    dec = pq.read_table(run / "curated/decisions.parquet").to_pylist()
    tok = {r["id"]: r["tokens_cl100k_base"] for r in _signals(run)}
    for rule, cost in s["token_cost"].items():
        assert cost == sum(tok[d["id"]] for d in dec if d["reason"] == rule)


def test_whatif_equals_full_rerun(run):
    run, _ = run
    run_decide(str(run), _cfg())
    sets = ["gopher_short_doc=6", "quality_low=0.9", "lang_low_score=none"]
    base = {r["id"]: r["status"] for r in pq.read_table(run / "curated/decisions.parquet").to_pylist()}
    w = run_whatif(str(run), _cfg(), sets, name="t")
    after = {r["id"]: r["status"] for r in pq.read_table(run / "curated/whatif/t/decisions.parquet").to_pylist()}
    assert w["vs_baseline"]["docs_changed"] == sum(base[i] != after[i] for i in base) > 0
    full = run_decide(str(run), apply_sets(_cfg(), sets), force=True)
    assert pq.read_table(run / "curated/whatif/t/decisions.parquet").equals(
        pq.read_table(run / "curated/decisions.parquet")
    )
    assert json.loads((run / "curated/whatif/t/stats.json").read_text()) == json.loads(
        (run / "curated/stats.json").read_text()
    )
    assert w["kept"] == full["kept"] and w["token_cost"] == full["token_cost"]
    assert "lang_low_score" not in w["token_cost"]


def test_stats_are_datatrove_pipeline_stats_and_merge(run):
    from datatrove.utils.stats import PipelineStats

    run, docs = run
    run_decide(str(run), _cfg())
    total = PipelineStats.from_json(json.loads((run / "curated/stats.json").read_text()))
    parts = [
        PipelineStats.from_json(json.loads(p.read_text())) for p in sorted(run.glob("curated/stats/shard-*.json"))
    ]
    merged = sum(parts, start=PipelineStats())
    assert json.loads(merged.to_json()) == json.loads(total.to_json())
    names = [s.name for s in total.stats]
    assert names == ["signals", "lang_low_score", "gopher_short_doc", "dup_not_representative"]
    first, rule = total.stats[0].stats, total.stats[1].stats
    assert _total(first["total"]) == len(docs)
    assert _total(rule["total"]) == _total(rule["forwarded"]) + _total(rule["dropped"])
    assert _total(rule["dropped"]) == _total(rule["dropped_lang_low_score"])
    assert _total(rule["lang=ja/dropped"]) > 0


def test_per_language_and_domain_step_table(run):
    run, _ = run
    s = run_decide(str(run), _cfg())
    rows = [r for r in s and json.loads((run / "curated/summary.json").read_text())["steps"]]
    by = {(r["step"], r["group_by"], r["group"]): r for r in rows}
    ja = by[("lang_low_score", "lang", "ja")]
    en = by[("lang_low_score", "lang", "en")]
    assert ja["docs_dropped_share"] > en["docs_dropped_share"]
    overall = by[("gopher_short_doc", "all", "all")]
    langs = [r for r in rows if r["step"] == "gopher_short_doc" and r["group_by"] == "lang"]
    for m in ("docs", "chars", "tokens_cl100k_base", "tokens_bpe2k"):
        for k in ("in", "kept", "dropped"):
            assert overall[f"{m}_{k}"] == sum(r[f"{m}_{k}"] for r in langs)
    domains = [r for r in rows if r["step"] == "gopher_short_doc" and r["group_by"] == "domain"]
    assert {r["group"] for r in domains} == {"code", "ui"}


def test_histograms_have_threshold_and_shares(run):
    run, _ = run
    run_decide(str(run), _cfg())
    h = json.loads((run / "curated/histograms.json").read_text())
    g = h["gopher_n_words"]
    assert len(g["bin_edges"]) == len(g["hist"]) + 1 and sum(g["hist"]) == g["n"]
    assert g["threshold"] == 3 and g["rule"] == "gopher_short_doc"
    assert 0 < g["docs_below"] < 1 and g["docs_below"] + g["docs_above"] <= 1
    assert "tokens_cl100k_base" in h and "quality_score" in h


def test_nan_and_missing_rows_quarantined_and_counted(run):
    run, docs = run
    f = run / "signals/shard-00001.parquet"
    t = pq.read_table(f)
    lid = t.column("lid_score").to_pylist()
    lid[2], lid[5] = float("nan"), None  # a NaN value and a missing one
    t = t.set_column(t.column_names.index("lid_score"), "lid_score", pa.array(lid, pa.float64()))
    pq.write_table(t, f)
    s = run_decide(str(run), _cfg())
    assert s["quarantined"] == 2 and s["reconciles"]
    lines = [json.loads(x) for x in (run / "curated/quarantine/decide.jsonl").read_text().splitlines()]
    assert [(q["line"], q["reason"], q["detail"]) for q in lines] == [
        (2, "signal_missing", "lid_score"),
        (5, "signal_missing", "lid_score"),
    ]
    stats = json.loads((run / "curated/stats.json").read_text())
    assert _total(stats[0]["stats"]["dropped_signal_missing:lid_score"]) == 2


def test_unknown_signal_column_fails_naming_it(run):
    run, _ = run
    cfg = _cfg()
    cfg.rules["c4_too_few_sentences"] = Rule(signal="c4_sentences_typo", drop_if="lt", threshold=5)
    with pytest.raises(ValueError, match="c4_sentences_typo"):
        run_decide(str(run), cfg)


def test_allowed_langs_and_rerun_skips(run):
    run, _ = run
    cfg = _cfg(allowed_langs=["en", "de"])
    first = run_decide(str(run), cfg)
    dec = pq.read_table(run / "curated/decisions.parquet").to_pylist()
    assert {d["reason"] for d in dec if d["lang"] == "fr"} <= {"lang_not_allowed"}
    mtime = (run / "curated/decisions.parquet").stat().st_mtime_ns
    assert run_decide(str(run), cfg) == first
    assert (run / "curated/decisions.parquet").stat().st_mtime_ns == mtime


def test_on_the_real_scorer_output(tmp_path):
    """The whole curation chain on engineer B's `curate score` output for real corpus documents."""
    import pyarrow.parquet as pq_

    from curation.plans.sampling import PlanConfig, run_plan
    from curation.signals.score import ScoreConfig, score_run

    src = pq_.read_table(FIXTURES / "curation_corpus.parquet")
    (tmp_path / "corpus").mkdir()
    pq_.write_table(src.slice(0, 60), tmp_path / "corpus/shard-00000.parquet")
    pq_.write_table(src.slice(400, 60), tmp_path / "corpus/shard-00001.parquet")
    score_run(
        ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1), str(tmp_path)
    )
    run_dedup(str(tmp_path))
    cfg = DecideConfig(
        rules={
            "lang_low_score": Rule(signal="lid_score", drop_if="lt", threshold=0.5),
            "top_2_gram": Rule(signal="gopher_top_2_gram_frac", drop_if="gt", threshold=0.2),
        }
    )
    s = run_decide(str(tmp_path), cfg)
    assert s["input"] == 120 and s["reconciles"] and s["dropped"] > 0
    up = json.loads((tmp_path / "curated/summary.json").read_text())["upstream"]
    assert up == {"corpus_rows": 120, "score_quarantined": 0, "reconciles": True}
    plans = run_plan(str(tmp_path), PlanConfig(budget_tokens=5000, bootstrap=20))
    assert sum(v["tokens"] for v in plans["unimax"]["languages"].values()) == plans["unimax"]["planned_tokens"]


def test_rule_on_all_null_signal_fails_fast(run):
    run, _ = run
    for f in sorted(run.glob("signals/shard-*.parquet")):
        t = pq.read_table(f)
        t = t.set_column(t.column_names.index("quality_score"), "quality_score", pa.nulls(len(t), pa.float64()))
        pq.write_table(t, f)
    with pytest.raises(ValueError, match="quality_score.*null for every document"):
        run_decide(
            str(run), DecideConfig(rules={"quality_low": Rule(signal="quality_score", drop_if="lt", threshold=0.5)})
        )


def test_datatrove_merge_stats_tool_reads_the_shard_stats(run, tmp_path, monkeypatch):
    import sys

    from datatrove.tools import merge_stats

    run, _ = run
    run_decide(str(run), _cfg())
    out = tmp_path / "merged.json"
    monkeypatch.setattr(sys, "argv", ["merge_stats", str(run / "curated/stats"), "-o", str(out)])
    merge_stats.main()
    assert json.loads(out.read_text()) == json.loads((run / "curated/stats.json").read_text())


# ---------------------------------------------------------------- issue 22: where rules apply, fairness, streaming


def test_applicability_and_per_language_thresholds(run):
    run, docs = run
    rule = Rule(signal="lid_score", drop_if="lt", threshold=0.8, by_lang={"de": None, "fr": 0.95},
                applies_if={"min_words": 4, "domains": ["ui"]})  # fmt: skip
    s = run_decide(str(run), DecideConfig(rules={"lang_low_score": rule}))
    assert s["reconciles"] and s["input"] == len(docs)
    dec = {r["id"]: r for r in pq.read_table(run / "curated/decisions.parquet").to_pylist()}
    judged = dropped = 0
    for sig in _signals(run):
        d = dec[sig["id"]]
        applies = sig["words"] >= 4 and sig["domain"] == "ui" and sig["lang"] != "de"
        th = 0.95 if sig["lang"] == "fr" else 0.8
        if not applies:  # outside the rule: passed, its pass column null
            assert d["pass_lang_low_score"] is None and d["reason"] != "lang_low_score", sig
            continue
        judged += 1
        assert d["pass_lang_low_score"] == (sig["lid_score"] >= th)
        dropped += sig["lid_score"] < th and d["status"] != "quarantined"
        assert (d["reason"] == "lang_low_score") == (sig["lid_score"] < th and d["status"] != "quarantined")
    assert judged and dropped and judged < len(docs)
    fair = json.loads((run / "curated/summary.json").read_text())["fairness"]
    de = [f for f in fair if f["rule"] == "lang_low_score" and f["lang"] == "de"]
    assert de and all(f["docs_dropped"] == 0 and f["judged_share"] == 0 for f in de)


def test_whatif_sets_one_languages_threshold(run):
    run, _ = run
    cfg = DecideConfig(rules={"lang_low_score": Rule(signal="lid_score", drop_if="lt", threshold=0.8)})
    run_decide(str(run), cfg)
    w = run_whatif(str(run), cfg, ["lang_low_score@ja=none"], name="ja_off")
    dec = pq.read_table(run / "curated/whatif/ja_off/decisions.parquet").to_pylist()
    assert not [d for d in dec if d["lang"] == "ja" and d["reason"] == "lang_low_score"]
    assert w["vs_baseline"]["kept_delta"] > 0


def test_fairness_flags_languages_above_twice_the_median():
    from curation.decide.decisions import fairness

    rows = [{"step": "r", "group_by": "lang", "group": g, "docs_in": 100, "docs_dropped": d,
             "docs_dropped_share": d / 100} for g, d in (("en", 10), ("de", 12), ("fr", 11), ("ar", 45), ("my", 1))]
    rows.append({"step": "r", "group_by": "lang", "group": "tiny", "docs_in": 5, "docs_dropped": 5,
                 "docs_dropped_share": 1.0})  # fmt: skip
    why = {("r", "ar"): {"reach": 100, "judged": 100, "signal_sum": 60.0, "signal_n": 100}}
    out = {f["lang"]: f for f in fairness(rows, why, ratio=2.0, min_share=0.01)}
    assert out["ar"]["median_share"] == 0.11 and out["ar"]["flagged"] and out["ar"]["above_english"]
    assert not any(out[g]["flagged"] for g in ("en", "de", "fr", "my", "tiny"))  # tiny: too few docs to judge
    assert out["ar"]["mean_signal"] == 0.6
    quiet = {f["lang"]: f for f in fairness(rows, why, ratio=2.0, min_share=0.5)}
    assert not quiet["ar"]["flagged"]


def test_streaming_decide_equals_one_table_decisions(run):
    """Shard by shard = all signals at once: the same statuses as deciding the concatenated table in one call."""
    import numpy as np
    import pyarrow as pa_

    from curation.decide.decisions import decide_table, load_shard, normalise_names

    run, _ = run
    cfg = _cfg(dedup=False)
    run_decide(str(run), cfg)
    dec = pq.read_table(run / "curated/decisions.parquet")
    files = sorted(str(p) for p in run.glob("signals/shard-*.parquet"))
    whole = normalise_names(pa_.concat_tables([load_shard(f, None, i) for i, f in enumerate(files)]))
    d = decide_table(whole, cfg)
    assert dec.column("id").to_pylist() == whole.column("id").to_pylist()
    assert dec.column("status").to_pylist() == list(d.status) and dec.column("reason").to_pylist() == list(d.reason)
    assert np.array_equal(np.isnan(d.passes["lang_low_score"]), dec.column("pass_lang_low_score").is_null())
