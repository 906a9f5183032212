"""Report section "Language ID on parallel units" (outputs of the score stage): per-language confusion."""

from __future__ import annotations

import pyarrow.compute as pc

from curation.signals.lid import unit_confusion
from report.context import Context, Unavailable
from report.html import Section, esc
from report.tables import read_shards


def lid_confusion(ctx: Context) -> Section:
    t = read_shards(ctx.run.root, "signals", ["lang", "unit_id", "lid_label", "lid_model_label"])
    if "lid_label" not in t.column_names or "unit_id" not in t.column_names:
        raise Unavailable("signals have no lid_label/unit_id columns; rerun `tokenwise curate score`")
    t = t.filter(pc.is_valid(t["unit_id"]))
    if not len(t):
        raise Unavailable("no parallel units (documents with a unit_id) in the corpus")
    model = t["lid_model_label"].to_pylist() if "lid_model_label" in t.column_names else None
    conf = unit_confusion(t["lang"].to_pylist(), t["lid_label"].to_pylist(), model)
    sec = Section("lid", "Language ID on parallel units")
    rows = [["language", "documents", "accuracy %", "model alone %", "labelled instead (count)"]]
    for lang, e in conf.items():
        model_acc = None if e["model_accuracy"] is None else 100 * e["model_accuracy"]
        rows.append([lang, e["docs"], 100 * e["accuracy"], model_acc,
                     ", ".join(f"{k} {v}" for k, v in e["confused"].items())])  # fmt: skip
    sec.tables.append(("Per-language LID accuracy and confusion (documents of parallel units)", rows))
    low = {lang: round(e["accuracy"], 3) for lang, e in conf.items() if e["accuracy"] < 0.95}
    sec.data = {"languages": {k: {"docs": v["docs"], "accuracy": v["accuracy"], "model_accuracy": v["model_accuracy"],
                                  "confused": v["confused"]} for k, v in conf.items()},
                "below_95": low,
                "headline": f"LID on parallel units: {len(conf) - len(low)} of {len(conf)} languages at >= 95%"}
    sec.intro = esc(
        "Each document of a parallel unit carries its catalog's language; the label is fastText's best label that "
        "the text's script and orthography do not contradict, weighted by score.lid_prior for short strings (model "
        "alone: its top label). Untranslated copies of the English "
        "string count as errors here, so this is a lower bound on accuracy for translated text."
    )
    return sec
