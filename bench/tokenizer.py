"""Tokenizer benchmark: goals of the tokenizer issue measured on real text, baselines in the same run.

    .venv/bin/python bench/tokenizer.py [--small]

Corpus (built fresh under a temp dir): human-translated .mo UI strings in many languages (parallel units, English
msgids shared), Python stdlib modules (code) and their docstrings (docs). Measures:
- domain tokenizer (code+docs, <=32k vocab) tokens saved vs cl100k on held-out code and docs (goal >= 25%);
- multilingual tokenizer on a temperature-balanced plan: worst-language premium on held-out parallel units (goal
  <= 2.0) and English UI cost vs cl100k (goal <= 1.10), beside cl100k's own premiums;
- training throughput: our streaming + sampling train() vs `train_from_iterator` on the identical sampled texts
  already in memory (goal: ours <= 1.5x the time);
- peak RSS of training at two corpus sizes (fresh process each);
- encode MB/s (batch and single) per tokenizer, and the savings table.
Writes bench/results/tokenizer.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGS_FULL = [
    "de",
    "fr",
    "es",
    "pt_BR",
    "ru",
    "uk",
    "pl",
    "tr",
    "vi",
    "id",
    "ja",
    "zh_CN",
    "ko",
    "ar",
    "fa",
    "he",
    "hi",
    "bn",
    "ta",
    "te",
    "my",
    "th",
    "sr@latin",
    "sw",
]
LANGS_SMALL = ["de", "ru", "ja", "zh_CN", "ar", "hi", "ta", "my"]


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def build(run: Path, langs: list[str], code_files: int, catalogs: int | None, recursive: bool = False) -> dict:
    """Write the bench corpus as <run>/curated shards; returns its size."""
    import itertools

    import pyarrow.parquet as pq

    from tests.tokenizer_fixtures import code_rows, docs_rows, ui_rows, write_curated

    rows = itertools.chain(
        ui_rows(langs, catalogs, None, shared_only=False),
        code_rows(code_files, 60_000, recursive),
        docs_rows(code_files, recursive),
    )
    write_curated(run, rows, shard_rows=20_000)
    t = pq.read_table(run / "curated", columns=["text", "domain"])
    return {"documents": t.num_rows, "chars": sum(len(x) for x in t.column("text").to_pylist())}


def _train_child(cfg_json: str, run: str, q: mp.Queue) -> None:
    from curation.tokenizer.config import TokenizerTrainConfig
    from curation.tokenizer.train import train

    q.put(train(TokenizerTrainConfig.model_validate_json(cfg_json), run))


def train_isolated(cfg, run: Path) -> dict:
    """Train in a fresh process so its peak RSS is the training's own (plus the interpreter and imports)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_train_child, args=(cfg.model_dump_json(), str(run), q))
    p.start()
    meta = q.get()
    p.join()
    return meta


def direct_baseline(cfg, run: Path) -> dict:
    """The same sampled texts, materialized first, then timed through `train_from_iterator` alone."""
    from curation.tokenizer.builders import build_tokenizer
    from curation.tokenizer.train import check_inputs, sample_texts

    checked = check_inputs(cfg, str(run))
    rates = {lang: v["rate"] for lang, v in checked["rates"]["languages"].items()}
    batches = list(sample_texts(checked["shards"], cfg, rates, {}))
    texts = [t for batch in batches for t in batch]
    times = {}
    for how, data in (("list", texts), ("batches", batches)):  # the faster of the two is the baseline
        tok, trainer = build_tokenizer(cfg)
        t0 = time.perf_counter()
        tok.train_from_iterator(data, trainer=trainer)
        times[how] = round(time.perf_counter() - t0, 3)
    return {"seconds": min(times.values()), "by_input": times, "chars": sum(map(len, texts))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="fewer languages and files, smaller vocabularies (~1 min)")
    args = ap.parse_args()

    from curation.tokenizer.config import TokenizerEvalConfig, TokenizerTrainConfig
    from curation.tokenizer.evaluate import evaluate

    small = args.small
    langs = LANGS_SMALL if small else LANGS_FULL
    vocab_code, vocab_multi = (16000, 16000) if small else (32000, 32000)
    out: dict = {"machine": machine(), "small": small, "languages": langs}
    with tempfile.TemporaryDirectory(prefix="tokbench-") as tmp:
        run, run_half = Path(tmp) / "run", Path(tmp) / "half"
        t0 = time.perf_counter()
        out["corpus"] = build(run, langs, 168 if small else 700, 12 if small else None, recursive=not small)
        out["corpus_half"] = build(run_half, langs[: len(langs) // 2], 40 if small else 120, 6 if small else 25)
        out["corpus_build_s"] = round(time.perf_counter() - t0, 1)
        print(f"corpus: {out['corpus']} (and {out['corpus_half']}) in {out['corpus_build_s']}s", flush=True)

        # superword (line) pre-tokenization for both goals; the GPT-4-regex multilingual tokenizer for comparison
        code = TokenizerTrainConfig(
            name="code",
            vocab_size=vocab_code,
            domains=["code", "docs"],
            pre_tokenization="line_byte_level",
            sample_chars=20_000_000,
            max_epochs=1.0,
        )
        sample = 5_000_000 if small else 10_000_000
        multi = TokenizerTrainConfig(
            name="multi",
            vocab_size=vocab_multi,
            temperature=3.0,
            max_epochs=8,
            pre_tokenization="line_byte_level",
            sample_chars=sample,
        )
        multi_gpt4 = multi.model_copy(update={"name": "multi_gpt4", "pre_tokenization": "gpt4_byte_level"})
        metas = {}
        for cfg in (code, multi, multi_gpt4):
            metas[cfg.name] = train_isolated(cfg, run)
            m = metas[cfg.name]
            print(
                f"trained {cfg.name}: vocab {m['vocab_size']}, {m['sampled_chars_total']:,} chars in "
                f"{m['total_seconds']}s (train {m['train_seconds']}s), peak RSS {m['peak_rss_mb']} MB",
                flush=True,
            )

        # throughput: ours (scan + stream + sample + train) vs direct train_from_iterator on the same texts
        direct = direct_baseline(multi, run)
        ours_s = metas["multi"]["total_seconds"]
        out["train_throughput"] = {
            "ours_seconds": ours_s,
            "direct_seconds": round(direct["seconds"], 3),
            "direct_by_input": direct["by_input"],
            "chars": direct["chars"],
            "ours_mb_s": round(direct["chars"] / ours_s / 1e6, 3),
            "direct_mb_s": round(direct["chars"] / direct["seconds"] / 1e6, 3),
            "ratio_ours_over_direct": round(ours_s / direct["seconds"], 3),
            "goal": "<= 1.5",
        }
        print(
            f"training: ours {ours_s:.1f}s vs direct train_from_iterator {direct['seconds']:.1f}s "
            f"-> {out['train_throughput']['ratio_ours_over_direct']}x",
            flush=True,
        )

        # peak RSS at two corpus sizes: the whole corpus (rate 1) streamed through the trainer
        rss = {}
        for label, r, c in (("half", run_half, out["corpus_half"]), ("full", run, out["corpus"])):
            cfg = TokenizerTrainConfig(name=f"rss_{label}", vocab_size=8000, sample_chars=c["chars"], temperature=1.0)
            m = train_isolated(cfg, r)
            rss[label] = {
                "corpus_chars": c["chars"],
                "peak_rss_mb": m["peak_rss_mb"],
                "rss_before_mb": m["rss_before_mb"],
                "train_seconds": m["train_seconds"],
            }
        out["peak_rss"] = rss
        print(f"peak RSS: {json.dumps(rss)}", flush=True)

        ecfg = TokenizerEvalConfig(
            tokenizers=["run:code", "run:multi", "run:multi_gpt4"], bootstrap=200, throughput_chars=1_000_000
        )
        report = evaluate(ecfg, str(run))
        res = report["results"]
        summ = {n: r["summary"] for n, r in res.items()}
        out["skipped_references"] = report["skipped_references"]
        cs, ms, ref = summ["code"], summ["multi"], summ["cl100k_base"]
        out["goals"] = {
            "domain_saved_vs_cl100k_code": cs.get("tokens_saved_vs_cl100k_base_code"),
            "domain_saved_vs_cl100k_docs": cs.get("tokens_saved_vs_cl100k_base_docs"),
            "domain_goal": ">= 0.25 at vocab <= 32k",
            "multi_premium_max": ms["premium_max"],
            "multi_premium_worst": ms["premium_worst_language"],
            "cl100k_premium_max": ref["premium_max"],
            "cl100k_premium_worst": ref["premium_worst_language"],
            "multi_english_ui_cost_vs_cl100k": _english_ui_cost(res, "multi"),
            "multi_english_all_cost_vs_cl100k": ms.get("english_cost_vs_cl100k_base"),
            "multi_goal": "premium_max <= 2.0 and English cost <= 1.10 x cl100k",
            "multi_gpt4_premium_max": summ["multi_gpt4"]["premium_max"],
            "multi_gpt4_english_ui_cost_vs_cl100k": _english_ui_cost(res, "multi_gpt4"),
            "multi_fairness_gini": ms["fairness_gini"],
            "cl100k_fairness_gini": ref["fairness_gini"],
        }
        out["premium_vs_eng_Latn"] = {
            key: {
                n: r["languages"][key]["metrics"].get("premium_vs_eng_Latn", {}).get("value") for n, r in res.items()
            }
            for key in sorted(res["multi"]["languages"])
        }
        out["encode_mb_s"] = {n: r["throughput"] for n, r in res.items()}
        out["savings_vs_cl100k"] = {
            n: {
                k.removeprefix("tokens_saved_vs_cl100k_base_") or "all": round(v, 4)
                for k, v in s.items()
                if k.startswith("tokens_saved_vs_cl100k_base")
            }
            for n, s in summ.items()
            if n != "cl100k_base"
        }
        out["roundtrip_failures"] = {n: s["roundtrip_failures"] for n, s in summ.items()}
    out_path = ROOT / "bench" / "results" / "tokenizer.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(
        json.dumps(
            {k: out[k] for k in ("goals", "train_throughput", "peak_rss", "encode_mb_s", "savings_vs_cl100k")},
            indent=1,
            default=float,
        )
    )
    print(f"wrote {out_path}")


def _english_ui_cost(res: dict, name: str) -> float | None:
    """Tokens on held-out English UI strings / cl100k's tokens on the same strings."""
    try:
        ours = res[name]["languages"]["eng_Latn"]["domains"]["ui"]["tokens"]["value"]
        ref = res["cl100k_base"]["languages"]["eng_Latn"]["domains"]["ui"]["tokens"]["value"]
    except KeyError:
        return None
    return round(ours / ref, 4)


if __name__ == "__main__":
    main()
