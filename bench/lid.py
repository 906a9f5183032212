"""Language ID on short held-out UI strings, per language: fastText alone vs the project's combined LID.

Run: ``.venv/bin/python bench/lid.py [--demo-run runs/demo]`` -> ``bench/results/lid.json``.

The strings: human translations in this machine's gettext catalogs (``/usr/share/locale``, the demo config's gettext
languages, catalogs and exclusions), read with the corpus builder's own ``.mo`` reader. A unit (domain, msgctxt,
English msgid; the corpus's ``unit_id``) goes to the held-out half or the tuning half by its hash, so a held-out
string's unit, in every language, is never seen while tuning. Held-out strings are short: a translated msgstr (not a
copy of its msgid; English = the msgid) with 10-39 letters after placeholders are stripped, of an msgid of 2+ words
(the demo corpus's rule), deduplicated, at most ``--per-lang`` per language taken in hash order. Gold labels are the
catalog language, cleaned of strings that are not in it: a non-Latin-script language's strings need its script to
dominate (Tamil catalogs keep key names such as "AudioRewind"), a Latin-script translation needs a word that is not
in its English msgid ("AppStream-Version" in a German catalog is English). The catalog language is never an input.

Columns: ``fasttext`` = lid.176's own top label over all 176 labels (datatrove's LID step); ``main`` = the combined
LID as merged before this bench (script evidence + the demo's ``lid_labels``); ``evidence`` = + letters a language
never writes (orthography) and short strings read without placeholders/options/identifiers/marks; ``combined`` = +
the demo config's ``lid_prior`` for strings too short to decide (the score stage's LID). The prior's weight was
chosen on the tuning half's short strings (en/de/fr/es), never on this set. ``--demo-run``: main vs combined on a
demo run's corpus: documents whose label changes, ``lang_low_score`` decisions that change, accuracy against the
catalog language.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "lid.json"
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

LO, HI = 10, 40  # letters of a short string, placeholders stripped


def demo_gettext() -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    src = next(s for s in cfg["corpus"]["sources"] if s["type"] == "gettext")
    return {
        "src": src,
        "lid_labels": cfg["score"]["lid_labels"],
        "prior": cfg["score"].get("lid_prior"),
        "prior_max_letters": cfg["score"].get("lid_prior_max_letters", 60),
        "decide": cfg["decide"],
    }


def read_strings(src: dict) -> dict[str, dict[int, list[tuple[str, str]]]]:
    """locale -> half (0 tune, 1 held-out) -> every (translated msgstr, its msgid) (``en``: msgids, once a unit)."""
    from curation.ingest.mo_catalogs import find_catalogs, is_real_text, read_mo, unit_id

    out: dict[str, dict[int, list[tuple[str, str]]]] = {}
    seen_en: set[str] = set()
    for domain, catalogs in find_catalogs(src["root"], src["languages"], src["catalogs"],
                                          src["exclude_catalogs"]).items():  # fmt: skip
        for loc, path in catalogs:
            try:
                _, entries = read_mo(path)
            except (OSError, ValueError):
                continue
            for e in entries:
                if isinstance(e, UnicodeDecodeError) or not e.msgstr:
                    continue
                text = e.msgstr[0]
                if not text.strip() or text == e.msgid or not is_real_text(e.msgid, 3, 2):
                    continue
                uid = unit_id(domain, e.msgctxt, e.msgid)
                half = int(uid, 16) % 2
                out.setdefault(loc, {0: [], 1: []})[half].append((text, e.msgid))
                if uid not in seen_en:
                    seen_en.add(uid)
                    out.setdefault("en", {0: [], 1: []})[half].append((e.msgid, e.msgid))
    return out


def _words(text: str) -> set[str]:
    return {w for w in "".join(c if c.isalpha() else " " for c in text.casefold()).split()}


def short_gold(loc: str, pairs: list[tuple[str, str]], per_lang: int) -> tuple[list[str], Counter]:
    """The held-out short strings of one language (module docstring), and why others were left out."""
    from curation.ingest.mo_catalogs import strip_formats
    from curation.signals.lid import script_of

    why: Counter = Counter()
    keep = set()
    for text, msgid in pairs:
        bare = strip_formats(text)
        if not LO <= sum(c.isalpha() for c in bare) < HI:
            why["not_short"] += 1
            continue
        script = script_of(bare)
        latin_lang = loc in ("en", "de", "fr", "es")
        if not latin_lang and script in ("Latn", "Zyyy"):
            why["not_in_the_language_script"] += 1
            continue
        if latin_lang and loc != "en" and _words(bare) <= _words(msgid):
            why["words_all_in_english_msgid"] += 1
            continue
        keep.add(text.strip())
    ranked = sorted(keep, key=lambda t: hashlib.sha1(t.encode()).hexdigest())
    return ranked[:per_lang], why


def accuracy(labels: list[str], want: str) -> float:
    return round(sum(x == want for x in labels) / len(labels), 4) if labels else 0.0


def han_shares(strings: dict[str, dict[int, list[tuple[str, str]]]]) -> dict[str, float]:
    """Share of tuning-half strings with Han that have no kana and only forms Chinese and Japanese share."""
    from curation.signals.lid import _han_forms

    out = {}
    for loc in ("ja", "zh_CN"):
        han = [t for t, _ in strings.get(loc, {0: []})[0] if any("\u4e00" <= c <= "\u9fff" for c in t)]
        shared = [t for t in han if not any("\u3040" <= c <= "\u30ff" for c in t) and _han_forms(t) == "both"]
        out[loc] = round(len(shared) / len(han), 4) if han else None
    return out


def demo_effect(run: Path, rule: dict, models: dict) -> dict:
    """Label and ``lang_low_score`` decision changes on a demo run's corpus (main's LID vs this one)."""
    import pyarrow.parquet as pq

    from curation.signals.lid import unit_confusion

    texts, langs = [], []
    for shard in sorted((run / "corpus").glob("shard-*.parquet")):
        t = pq.read_table(shard, columns=["id", "text", "lang"])
        texts += t.column("text").to_pylist()
        langs += t.column("lang").to_pylist()
    from curation.signals.words import count_words_batch

    words = count_words_batch(texts)
    a, b = models["main"].identify(texts), models["combined"].identify(texts)
    thr, min_words = rule["threshold"], (rule.get("applies_if") or {}).get("min_words", 0)

    def drops(scores: list[float]) -> list[bool]:
        return [s < thr and w >= min_words for s, w in zip(scores, words, strict=True)]

    da, db = drops(a.scores), drops(b.scores)
    conf_a, conf_b = unit_confusion(langs, a.labels), unit_confusion(langs, b.labels)
    return {
        "run": str(run),
        "documents": len(texts),
        "label_changed": sum(x != y for x, y in zip(a.labels, b.labels, strict=True)),
        "lang_low_score_drops": {"main": sum(da), "combined": sum(db)},
        "lang_low_score_changed": sum(x != y for x, y in zip(da, db, strict=True)),
        "accuracy_vs_catalog_language": {
            lang: {"main": round(conf_a[lang]["accuracy"], 4), "combined": round(conf_b[lang]["accuracy"], 4)}
            for lang in conf_a
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-lang", type=int, default=800, help="held-out strings per language (hash order)")
    ap.add_argument("--demo-run", type=Path, default=None, help="also measure the effect on this run's corpus")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from curation.signals.lid import LanguageIdentifier, expected_label

    cfg = demo_gettext()
    t0 = time.perf_counter()
    strings = read_strings(cfg["src"])
    labels = cfg["lid_labels"]
    models = {
        "main": LanguageIdentifier(labels=labels, orthography=False, clean=False),
        "evidence": LanguageIdentifier(labels=labels),
        "combined": LanguageIdentifier(labels=labels, prior=cfg["prior"], prior_max_letters=cfg["prior_max_letters"]),
    }
    per_lang, sizes, left_out = {}, {}, {}
    for loc in ["en", *cfg["src"]["languages"]]:
        if loc not in strings:
            continue
        texts, why = short_gold(loc, strings[loc][1], args.per_lang)
        sizes[loc], left_out[loc] = len(texts), dict(why)
        if not texts:
            continue
        want = expected_label(loc, "en")
        r = {name: m.identify(texts) for name, m in models.items()}
        row = {"fasttext": accuracy(r["main"].model_labels, want)}
        row.update({name: accuracy(x.labels, want) for name, x in r.items()})
        row["combined_confused"] = dict(Counter(x for x in r["combined"].labels if x != want).most_common(4))
        per_lang[loc] = row
    cols = ["fasttext", "main", "evidence", "combined"]
    result = {
        "bench": "lid",
        "held_out": {
            "source": "gettext msgstr of /usr/share/locale (demo config's languages and catalog filters; en = msgid)",
            "split": "unit_id hash parity: odd = held-out, even = tuning (lid_prior's weight); no unit on both sides",
            "short": f"{LO}-{HI - 1} letters after placeholders are stripped; msgid of 2+ words; deduplicated",
            "gold_cleaning": "non-Latin languages: their script dominates; de/fr/es: a word not in the English msgid",
            "per_lang_cap": args.per_lang,
            "sizes": sizes,
            "left_out": left_out,
        },
        "lid_labels": labels,
        "lid_prior": cfg["prior"],
        "lid_prior_max_letters": cfg["prior_max_letters"],
        "accuracy": per_lang,
        "min_accuracy": {c: min(v[c] for v in per_lang.values()) for c in cols},
        "mean_accuracy": {c: round(sum(v[c] for v in per_lang.values()) / len(per_lang), 4) for c in cols},
        "below_95": {c: sorted(k for k, v in per_lang.items() if v[c] < 0.95) for c in cols},
        "han_without_kana_shared_forms_share": han_shares(strings),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    if args.demo_run:
        rule = cfg["decide"]["rules"]["lang_low_score"]
        result["demo"] = demo_effect(args.demo_run, rule, models)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{'lang':6s} {'n':>4s} " + " ".join(f"{c:>11s}" for c in cols))
    for loc, v in per_lang.items():
        print(f"{loc:6s} {sizes[loc]:4d} " + " ".join(f"{v[c]:11.3f}" for c in cols), v["combined_confused"])
    print("below 95%:", result["below_95"])
    if "demo" in result:
        print("demo:", {k: v for k, v in result["demo"].items() if k != "accuracy_vs_catalog_language"})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
