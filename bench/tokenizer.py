"""Tokenizer benchmark: parity-aware BPE beside classic BPE and Unigram trained on the same sample, and the domain
tokenizer's savings beside its off-domain cost, all measured on parallel text none of them trained on.

    .venv/bin/python bench/tokenizer.py [--small] [--curated DIR] [--parallel FILE] [--vocab N] [--throughput]

Corpus: ``corpus build`` with configs/demo.yaml's ``corpus:`` section (gettext UI strings in the demo's 14 languages
+ English, stdlib code and docstrings, /usr/share/doc prose), then exact duplicate texts removed as the curated stage
does (``--curated DIR`` uses an existing run's curated shards instead, e.g. runs/demo/curated after ``make demo``).
Evaluation sets (parallel, never trained on):
- held-out: every unit of the 10% unit split (``tokenizer eval``);
- out-of-catalog: the GTK widget-property catalogs (``*-properties``) the demo corpus leaves out, with every string
  that also occurs in the training corpus removed first (scored through ``tokenizer eval --parallel``);
- ``--parallel FILE``: an external parallel JSONL; its strings are removed from the training corpus first.
Measures, per evaluation set: worst-language premium vs English (with its units and 95% interval), English UI tokens vs
cl100k, Gini of per-language cost, per-language premiums; training time of each model; the domain tokenizers
(line_byte_level and GPT-4 splitting, same data) tokens saved vs cl100k on held-out code/docs and their cost on English
UI text. ``--throughput`` adds streaming-vs-direct training time and peak RSS (bench/results/tokenizer_train.json).
Writes bench/results/tokenizer.json (``--small``: tokenizer_small.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

SMALL_LANGS = ["de", "ru", "ja", "zh_CN", "ar", "hi", "ta", "my"]
GOAL = {"premium_max": 1.5, "english_ui_cost_vs_cl100k": 1.10, "vocab_max": 64000, "languages": 15, "scripts": 8}


# ---------------------------------------------------------------------------------------------------- corpus


def build_corpus(run: Path, small: bool, drop_texts: set[str]) -> dict:
    """``corpus build`` with the demo's corpus section into <run>/corpus, then deduplicated texts into curated/."""
    from curation.ingest.build import CorpusConfig, build
    from tokenwise.config import load_section

    cfg = load_section(str(ROOT / "configs/demo.yaml"), "corpus", CorpusConfig)
    if small:
        for src in cfg.sources:
            if src.type == "gettext":
                src.languages = SMALL_LANGS
            if src.type == "stdlib":
                src.max_modules = 60
    t0 = time.perf_counter()
    build(cfg, str(run))
    return dedup_to_curated(run / "corpus", run, drop_texts) | {"build_s": round(time.perf_counter() - t0, 1)}


def dedup_to_curated(src: Path, run: Path, drop_texts: set[str]) -> dict:
    """Copy shard rows to <run>/curated keeping the first document of each exact text; texts in ``drop_texts`` go."""
    import pyarrow.parquet as pq

    from tests.tokenizer_fixtures import write_curated

    seen, dropped = set(), Counter()

    def rows():
        for path in sorted(src.glob("shard-*.parquet")):
            for r in pq.read_table(path, columns=["id", "text", "source", "lang", "domain", "unit_id"]).to_pylist():
                if r["text"] in drop_texts:
                    dropped["external_set"] += 1
                elif r["text"] in seen:
                    dropped["duplicate"] += 1
                else:
                    seen.add(r["text"])
                    yield r

    write_curated(run, rows(), shard_rows=20_000)
    return corpus_stats(run) | {"dropped": dict(dropped)}


def corpus_stats(run: Path) -> dict:
    import pyarrow.parquet as pq

    from curation.languages import language_info
    from tokenwise.splits import is_heldout

    t = pq.read_table(run / "curated", columns=["id", "unit_id", "lang", "text"]).to_pydict()
    langs = Counter(x or "und" for x in t["lang"])
    units = {u for u in t["unit_id"] if u}
    held = {u for u in units if is_heldout("", u)}
    scripts = {language_info(lang)["script"] for lang in langs if lang != "und"}
    return {
        "documents": len(t["id"]),
        "chars": sum(map(len, t["text"])),
        "documents_by_lang": dict(sorted(langs.items())),
        "scripts": sorted(scripts),
        "units": len(units),
        "heldout_units": len(held),
    }


def out_of_catalog_set(path: Path, langs: list[str], train_texts: set[str]) -> dict:
    """Parallel JSONL (unit_id, lang, text) from the ``*-properties`` catalogs, training strings removed."""
    from curation.ingest.mo_catalogs import find_catalogs, iter_domain
    from curation.ingest.readers import ReadOptions
    from tokenwise.documents import Quarantined

    found = find_catalogs("/usr/share/locale", langs, ["*-properties"], [])
    units: dict[str, dict[str, str]] = {}
    removed = 0
    for dom, cats in found.items():
        for batch in iter_domain(dom, cats, ReadOptions(source="oc"), 3, 2, Counter()):
            if isinstance(batch, Quarantined):
                continue
            for r in batch.to_pylist():
                if r["text"] in train_texts:
                    removed += 1
                    continue
                units.setdefault(r["unit_id"], {})[r["lang"]] = r["text"]
    kept = {u: t for u, t in units.items() if "en" in t and len(t) > 1}
    with open(path, "w", encoding="utf-8") as f:
        for u, texts in sorted(kept.items()):
            for lang, text in sorted(texts.items()):
                f.write(json.dumps({"unit_id": u, "lang": lang, "text": text}, ensure_ascii=False) + "\n")
    by_lang = Counter(lang for t in kept.values() for lang in t)
    return {"catalogs": sorted(found), "units": len(kept), "units_by_lang": dict(sorted(by_lang.items())),
            "strings_removed_as_seen_in_training": removed}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- training


def _train_child(cfg_json: str, run: str, q: mp.Queue) -> None:
    from curation.tokenizer.config import TokenizerTrainConfig
    from curation.tokenizer.train import train

    q.put(train(TokenizerTrainConfig.model_validate_json(cfg_json), run))


def train_isolated(cfg, run: Path) -> dict:
    """Train in a fresh process so its time and peak RSS are the training's own (plus the interpreter and imports)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_train_child, args=(cfg.model_dump_json(), str(run), q))
    p.start()
    meta = q.get()
    p.join()
    return meta


def configs(small: bool, vocab: int):
    """Multilingual candidates, all on one sample (same plan, characters, seed): classic BPE and parity-aware BPE with
    the demo's line_byte_level pre-tokenizer, and classic BPE, Unigram and parity-aware BPE with GPT-4 splitting
    (Unigram on whole lines takes ~10x longer); then the domain tokenizers."""
    from curation.tokenizer.config import TokenizerTrainConfig

    sample = 1_000_000 if small else 4_000_000
    common = {"vocab_size": vocab, "temperature": 3.0, "max_epochs": 8, "sample_chars": sample}
    gpt4 = {**common, "pre_tokenization": "gpt4_byte_level"}
    line = {**common, "pre_tokenization": "line_byte_level"}
    multi = [
        TokenizerTrainConfig(name="bpe", **line),
        TokenizerTrainConfig(name="parity", model="parity_bpe", **line),
        TokenizerTrainConfig(name="bpe_gpt4", **gpt4),
        TokenizerTrainConfig(name="unigram_gpt4", model="unigram", **gpt4),
        TokenizerTrainConfig(name="parity_gpt4", model="parity_bpe", **gpt4),
    ]
    domain = []
    for v in (16000,) if small else (16000, 32000):
        for pre in ("line_byte_level", "gpt4_byte_level"):
            name = f"code{v // 1000}k" + ("" if pre == "line_byte_level" else "_gpt4")
            domain.append(TokenizerTrainConfig(name=name, vocab_size=v, domains=["code", "docs"], pre_tokenization=pre,
                                               sample_chars=1_000_000 if small else 3_000_000))  # fmt: skip
    return multi, domain


def training_row(meta: dict) -> dict:
    row = {
        "model": meta["config"]["model"],
        "vocab_size": meta["vocab_size"],
        "train_seconds": meta["train_seconds"],
        "total_seconds": meta["total_seconds"],
        "peak_rss_mb": meta["peak_rss_mb"],
        "sampled_chars": meta["sampled_chars_total"],
        "und_share": meta["und_share"],
        "cut": meta["cut"],
    }
    if "parity" in meta:
        p = meta["parity"]
        row["parity"] = {k: p[k] for k in ("target_premium", "merges", "merges_chosen_for", "dev_units",
                                           "dev_premium_vs_english")}  # fmt: skip
    return row


# ---------------------------------------------------------------------------------------------------- evaluation


def premium_view(report: dict, names: list[str]) -> dict:
    """Per tokenizer: worst premium (units, interval), English UI cost vs cl100k, Gini, every language's premium."""
    out = {}
    for n in names:
        res = report["results"][n]
        s = res["summary"]
        prem = {k: v["metrics"]["premium_vs_eng_Latn"] for k, v in res["languages"].items()
                if "premium_vs_eng_Latn" in v["metrics"]}  # fmt: skip
        en_ui = s.get("english_cost_vs_cl100k_base_ui", s.get("english_cost_vs_cl100k_base_parallel"))
        en_ui = 1.0 if n == "cl100k_base" else en_ui
        out[n] = {
            "premium_max": s["premium_max"],
            "premium_worst_language": s["premium_worst_language"],
            "premium_worst_units": s["premium_worst_units"],
            "premium_max_ci95": s["premium_max_ci95"],
            "premium_mean": s["premium_mean"],
            "fairness_gini": s["fairness_gini"],
            "english_ui_cost_vs_cl100k": en_ui,
            "premium_languages": s["premium_languages"],
            "premium_few_units": s["premium_few_units"],
            "premium_unmeasured": s["premium_unmeasured"],
            "roundtrip_failures": s["roundtrip_failures"],
            "premium": {k: round(v["value"], 4) for k, v in sorted(prem.items())},
            "units": {k: v["n"] for k, v in sorted(prem.items())},
        }
        if n in ("cl100k_base", "o200k_base"):
            continue
        out[n]["goal_met"] = bool(
            s["premium_max"] is not None and s["premium_max"] <= GOAL["premium_max"]
            and en_ui is not None and en_ui <= GOAL["english_ui_cost_vs_cl100k"]
            and res["vocab_size"] <= GOAL["vocab_max"]
        )  # fmt: skip
    return out


def domain_view(report: dict, names: list[str]) -> dict:
    """Per domain tokenizer: tokens saved vs cl100k on held-out code and docs, and the cost on English UI text."""
    out = {}
    for n in names:
        s = report["results"][n]["summary"]
        out[n] = {
            "saved_vs_cl100k_code": s.get("tokens_saved_vs_cl100k_base_code"),
            "saved_vs_cl100k_docs": s.get("tokens_saved_vs_cl100k_base_docs"),
            "off_domain_english_ui_cost_vs_cl100k": s.get("english_cost_vs_cl100k_base_ui"),
            "vocab_size": report["results"][n]["vocab_size"],
        }
    return out


def throughput_bench(run: Path, cfg, out_path: Path) -> None:
    """Streaming train() vs train_from_iterator on the same texts in memory, and peak RSS at two corpus sizes."""
    from curation.tokenizer.builders import build_tokenizer
    from curation.tokenizer.train import SampleLog, check_inputs, sample_texts

    meta = train_isolated(cfg.model_copy(update={"name": "tp_ours"}), run)
    checked = check_inputs(cfg, str(run))
    rates = {lang: v["rate"] for lang, v in checked["rates"]["languages"].items()}
    batches = list(sample_texts(checked["shards"], cfg, rates, SampleLog()))
    tok, trainer = build_tokenizer(cfg)
    t0 = time.perf_counter()
    tok.train_from_iterator(batches, trainer=trainer)
    direct = time.perf_counter() - t0
    chars = sum(len(t) for b in batches for t in b)
    res = {"machine": machine(), "chars": chars, "ours_seconds": meta["total_seconds"],
           "direct_seconds": round(direct, 3), "ratio_ours_over_direct": round(meta["total_seconds"] / direct, 3),
           "peak_rss_mb": meta["peak_rss_mb"], "goal": "<= 1.5"}  # fmt: skip
    out_path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"training throughput: {json.dumps(res)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="8 languages, 16k vocab, 1M-char samples (~5 minutes)")
    ap.add_argument("--curated", type=Path, help="use this run's curated shards instead of building the corpus")
    ap.add_argument("--parallel", type=Path, help="external parallel JSONL to evaluate on (removed from training)")
    ap.add_argument("--vocab", type=int, help="multilingual vocabulary size (default 64000; --small 16000)")
    ap.add_argument("--throughput", action="store_true", help="also time streaming vs direct training")
    args = ap.parse_args()

    from curation.tokenizer.config import TokenizerEvalConfig
    from curation.tokenizer.evaluate import evaluate
    from curation.tokenizer.parallel import read_parallel

    vocab = args.vocab or (16000 if args.small else 64000)
    out: dict = {"machine": machine(), "small": args.small, "goal": GOAL, "vocab": vocab}
    ext_texts = set(read_parallel(args.parallel)[0].texts) if args.parallel else set()
    with tempfile.TemporaryDirectory(prefix="tokbench-") as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        if args.curated:
            out["corpus"] = dedup_to_curated(args.curated, run, ext_texts) | {"source": str(args.curated)}
        else:
            out["corpus"] = build_corpus(run, args.small, ext_texts) | {"source": "configs/demo.yaml corpus"}
        langs = sorted(k for k in out["corpus"]["documents_by_lang"] if k not in ("en", "und"))
        import pyarrow.parquet as pq

        train_texts = set(pq.read_table(run / "curated", columns=["text"]).column("text").to_pylist())
        oc_path = Path(tmp) / "out_of_catalog.jsonl"
        out["out_of_catalog_set"] = out_of_catalog_set(oc_path, langs, train_texts)
        del train_texts
        out["corpus_s"] = round(time.perf_counter() - t0, 1)
        print(f"corpus: {json.dumps(out['corpus'])}\nout-of-catalog: {json.dumps(out['out_of_catalog_set'])}",
              flush=True)  # fmt: skip

        multi, domain = configs(args.small, vocab)
        out["training"] = {}
        for cfg in multi + domain:
            meta = train_isolated(cfg, run)
            out["training"][cfg.name] = training_row(meta)
            print(f"trained {cfg.name}: {json.dumps(out['training'][cfg.name])}", flush=True)
        t = out["training"]
        out["train_time_vs_bpe"] = {
            "parity": round(t["parity"]["train_seconds"] / t["bpe"]["train_seconds"], 2),
            "parity_gpt4": round(t["parity_gpt4"]["train_seconds"] / t["bpe_gpt4"]["train_seconds"], 2),
            "unigram_gpt4": round(t["unigram_gpt4"]["train_seconds"] / t["bpe_gpt4"]["train_seconds"], 2),
        }

        mnames = [c.name for c in multi]
        dnames = [c.name for c in domain]
        ecfg = TokenizerEvalConfig(tokenizers=[f"run:{n}" for n in mnames + dnames], max_docs_per_group=10**9,
                                   bootstrap=200, throughput_chars=200_000)  # fmt: skip
        held = evaluate(ecfg, str(run))
        refs = [n for n in ("cl100k_base", "o200k_base") if n in held["results"]]
        out["heldout"] = {"units": held["units"], "documents": held["heldout_documents"],
                          "multilingual": premium_view(held, mnames + refs)}  # fmt: skip
        out["domain"] = domain_view(held, dnames)
        out["scripts_evaluated"] = sorted(
            {lang["language_info"]["script"] for lang in held["results"]["bpe"]["languages"].values()} - {"Zyyy"}
        )
        oc = evaluate(ecfg, str(run), parallel=str(oc_path))
        out["out_of_catalog"] = {"units": oc["units"], "documents": oc["heldout_documents"],
                                 "multilingual": premium_view(oc, mnames + refs)}  # fmt: skip
        if args.parallel:
            ext = evaluate(ecfg, str(run), parallel=str(args.parallel))
            out["external"] = {"path": str(args.parallel), "units": ext["units"], "parallel": ext["parallel"],
                               "multilingual": premium_view(ext, mnames + refs)}  # fmt: skip
        out["encode_mb_s"] = {n: r["throughput"] for n, r in held["results"].items()}
        if args.throughput:
            throughput_bench(run, multi[0], ROOT / "bench" / "results" / "tokenizer_train.json")
    name = "tokenizer_small.json" if args.small else "tokenizer.json"
    out_path = ROOT / "bench" / "results" / name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(json.dumps(_headline(out), indent=1))
    print(f"wrote {out_path}")


def _headline(out: dict) -> dict:
    keys = ("premium_max", "premium_worst_language", "premium_worst_units", "fairness_gini",
            "english_ui_cost_vs_cl100k", "goal_met")  # fmt: skip
    head = {}
    for ds in ("heldout", "out_of_catalog", "external"):
        if ds in out:
            head[ds] = {n: {k: v.get(k) for k in keys} for n, v in out[ds]["multilingual"].items()}
    head["domain"] = out["domain"]
    head["train_seconds"] = {n: t["train_seconds"] for n, t in out["training"].items()}
    return head


if __name__ == "__main__":
    main()
