"""Report sections of issue 22 on small real inputs: LID confusion on parallel units, the filters' fairness table."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from report.context import Context
from report.sections.filters import filters
from report.sections.lid import lid_confusion
from tokenwise.rundir import RunDir, write_json


def test_lid_section_confusion_per_language_on_parallel_units(tmp_path):
    from curation.signals.lid import LanguageIdentifier

    texts = {"zh_CN": ["是否显示插入光标", "无法打开文件，请检查权限设置"], "ja": ["ファイルを開けませんでした"],
             "de": ["Die Datei konnte nicht geöffnet werden"], "en": ["The file could not be opened"]}  # fmt: skip
    rows = [(lang, t) for lang, ts in texts.items() for t in ts]
    r = LanguageIdentifier().identify([t for _, t in rows])
    (tmp_path / "signals").mkdir()
    table = pa.table({"id": [str(i) for i in range(len(rows))], "lang": [lang for lang, _ in rows],
                      "unit_id": ["u1"] * len(rows), "lid_label": r.labels, "lid_model_label": r.model_labels})
    pq.write_table(table, tmp_path / "signals/shard-00000.parquet")
    sec = lid_confusion(Context(RunDir(str(tmp_path))))
    langs = sec.data["languages"]
    assert set(langs) == {"zh_CN", "ja", "de", "en"}
    assert langs["zh_CN"]["accuracy"] == 1.0  # Han without kana: never ja
    assert sec.data["below_95"] == {} and "4 of 4" in sec.data["headline"]
    assert sec.tables and sec.tables[0][1][0][0] == "language"


def test_filters_section_lists_fairness_flags_with_why(tmp_path):
    from curation.decide.decisions import fairness

    rows = [{"step": "top_2_gram", "group_by": "lang", "group": g, "docs_in": 100, "docs_dropped": d,
             "docs_dropped_share": d / 100, "tokens_cl100k_base_in": 1000, "tokens_cl100k_base_dropped": 10 * d}
            for g, d in (("en", 10), ("de", 12), ("fr", 11), ("ar", 45))]  # fmt: skip
    total = {"step": "top_2_gram", "group_by": "all", "group": "all", "docs_in": 400, "docs_dropped": 78,
             "docs_dropped_share": 0.195, "tokens_cl100k_base_in": 4000, "tokens_cl100k_base_dropped": 780}
    why = {("top_2_gram", "ar"): {"reach": 100, "judged": 40, "signal_sum": 30.0, "signal_n": 40}}
    summ = {"input": 400, "kept": 322, "dropped": 78, "quarantined": 0, "reconciles": True,
            "reference_tokenizer": "cl100k_base", "steps": [total, *rows], "config": {"fairness_ratio": 2.0},
            "rules": [{"name": "top_2_gram", "signal": "gopher_top_2_gram_frac", "drop_if": "gt", "threshold": 0.5}],
            "token_cost": {"top_2_gram": 780}, "by_reason": {"top_2_gram": 78},
            "fairness": fairness(rows, why, 2.0, min_share=0.01)}  # fmt: skip
    (tmp_path / "curated").mkdir()
    write_json(str(tmp_path / "curated/summary.json"), summ)
    sec = filters(Context(RunDir(str(tmp_path))))
    assert [f["lang"] for f in sec.data["flagged_languages"]] == ["ar"]
    table = next(rows for title, rows in sec.tables if title.startswith("Fairness"))
    ar = next(r for r in table if r[1] == "ar")
    assert ar[7] == "FLAG" and ar[8] == "FLAG" and "judges 40%" in ar[9]
    assert "1 (rule, language) pairs" in sec.intro
