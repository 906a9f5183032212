"""Curation throughput: our full signal set vs one cl100k encode vs datatrove's own filters, in one run.

Run: .venv/bin/python bench/curate.py [--small]   -> bench/results/curate.json

Corpus: real text from this machine (Python stdlib sources and docstrings, /usr/share/doc prose, gettext translations
in many languages grouped into documents), repeated with variation (each repeat rotates every document's lines, so
documents differ while the vocabulary stays natural) up to --mb megabytes (100 by default, 10 with --small).
All numbers are single-process MB/s of CPU time (time.process_time; every timed path is single-threaded, so this is
MB/s per core, robust to other jobs sharing the machine). datatrove's filters are slow, so they run on an evenly
strided subsample (--ref-mb), and our heuristics run on that same subsample too: decisions are compared there and
the speed ratios use same-sample timings. Other benches (e.g. dedup) register a function in :data:`BENCHES`.
"""

from __future__ import annotations

import argparse
import gettext
import glob
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).parent / "results" / "curate.json"
# name -> fn(texts, subsample, args) -> dict of results; engineers add their section here (e.g. "dedup")
BENCHES: dict[str, Callable[[list[str], list[str], argparse.Namespace], dict]] = {}


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def base_texts() -> list[str]:
    """Real documents found on the machine (one pass, no repetition), code / prose / UI strings interleaved."""
    code, prose, ui = [], [], []
    for p in sorted(glob.glob("/usr/lib/python3.11/**/*.py", recursive=True)):
        try:
            code.append(Path(p).read_text(encoding="utf-8")[:200_000])
        except (OSError, UnicodeDecodeError):
            continue
    for p in sorted(glob.glob("/usr/share/doc/*/README*") + glob.glob("/usr/share/doc/**/*.md", recursive=True)):
        if not p.endswith(".gz") and Path(p).is_file():
            try:
                prose.append(Path(p).read_text(encoding="utf-8")[:200_000])
            except (OSError, UnicodeDecodeError):
                continue
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                strings = [v for k, v in gettext.GNUTranslations(f)._catalog.items() if k and isinstance(v, str)]
        except (OSError, UnicodeDecodeError, IndexError, ValueError, KeyError):  # a few catalogs are not UTF-8
            continue
        for i in range(0, len(strings), 40):  # 40 UI strings per document
            ui.append("\n".join(strings[i : i + 40]))
    mixed = itertools.chain.from_iterable(itertools.zip_longest(code, prose, ui, ui, ui, ui))
    return [d for d in mixed if d and d.strip()]


def build_corpus(target_mb: float) -> list[str]:
    """Repeat the base documents with rotated lines until the corpus reaches target_mb."""
    base = base_texts()
    out, size, r = [], 0, 0
    while size < target_mb * 1e6:
        for d in base:
            if r:
                lines = d.split("\n")
                k = r % len(lines)
                d = "\n".join(lines[k:] + lines[:k])
            out.append(d)
            size += len(d.encode())
            if size >= target_mb * 1e6:
                break
        r += 1
    return out


def mb(texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / 1e6


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process: every path timed here is single-threaded, so this is the per-core cost, and it
    stays meaningful on a machine shared with other jobs (wall time does not)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def batches(texts: list[str], n: int = 256):
    for i in range(0, len(texts), n):
        yield texts[i : i + n]


def bench_ours(texts: list[str]) -> dict:
    """Full signal set (words, LID + script, every rule value, cl100k tokens) in one pass, timed per part."""
    from curation.signals.score import ScoreConfig, Scorers

    scorers = Scorers(ScoreConfig(tokenizers=["tiktoken:cl100k_base"]), ".", ["tiktoken:cl100k_base"])
    scorers.score(texts[:50])  # load models outside the timings
    scorers.seconds.clear()
    size = mb(texts)
    full = timed(lambda: [scorers.score(b) for b in batches(texts)])
    parts = dict(scorers.seconds)
    tok = parts.pop("tokens_cl100k_base")
    out = {"mb": size, "docs": len(texts), "full_signal_set_mb_s": size / full, "tokenize_cl100k_mb_s": size / tok}
    out.update({f"{k}_mb_s": size / v for k, v in parts.items()})
    out["full_over_tokenize_cost"] = full / tok
    out["parts_over_tokenize_cost"] = {k: v / tok for k, v in parts.items()}
    return out


def bench_reference(sub: list[str]) -> dict:
    """datatrove's filters and LID on the subsample; our heuristics on the same texts; decisions compared."""
    from curation.signals import datatrove_reference as ref
    from curation.signals.heuristics import FILTERS, HeuristicScorer, decide
    from curation.signals.lid import LanguageIdentifier

    size = mb(sub)
    out: dict = {"mb": size, "docs": len(sub)}
    theirs = {}
    for name, flt in ref.make_filters().items():
        t0 = time.process_time()
        theirs[name] = ref.run_filter(flt, sub)  # one filter at a time: each pays its own word split, as in a pipeline
        out[f"datatrove_{name}_mb_s"] = size / (time.process_time() - t0)
    lid = ref.make_lid()
    ref.run_lid(lid, sub[:5])
    out["datatrove_lid_mb_s"] = size / timed(lambda: ref.run_lid(lid, sub))
    scorer = HeuristicScorer()
    t_cold = timed(lambda: scorer.score_batch(sub[: len(sub) // 2]))
    t0 = time.process_time()
    values = scorer.score_batch(sub)
    t_ours = time.process_time() - t0
    out["ours_heuristics_mb_s"] = size / t_ours
    out["ours_heuristics_first_half_cold_cache_s"] = t_cold
    ours = decide(values)
    out["decision_mismatches"] = {f: sum(a != b for a, b in zip(theirs[f], ours[f], strict=True)) for f in FILTERS}
    out["dropped_by_datatrove"] = {f: sum(1 for r in theirs[f] if r) for f in FILTERS}
    our_lid = LanguageIdentifier()
    out["ours_lid_mb_s"] = size / timed(lambda: our_lid.predict(sub))
    t_dt = sum(size / out[f"datatrove_{f}_mb_s"] for f in FILTERS)
    out["datatrove_all_four_filters_mb_s"] = size / t_dt
    out["speedup_ours_heuristics_vs_datatrove_four_filters"] = t_dt / t_ours
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="10 MB corpus, 1 MB datatrove subsample")
    ap.add_argument("--mb", type=float, default=None, help="corpus size in MB (default 100, --small 10)")
    ap.add_argument("--ref-mb", type=float, default=None, help="datatrove subsample in MB (default 3, --small 1)")
    args = ap.parse_args()
    target = args.mb or (10 if args.small else 100)
    ref_mb = args.ref_mb or (1 if args.small else 3)
    t0 = time.perf_counter()
    texts = build_corpus(target)
    step = max(1, int(mb(texts) / ref_mb))
    sub = texts[::step]
    print(
        f"corpus: {mb(texts):.1f} MB, {len(texts)} docs (built in {time.perf_counter() - t0:.0f}s); "
        f"datatrove subsample: {mb(sub):.2f} MB, {len(sub)} docs",
        flush=True,
    )
    result = {"machine": machine(), "corpus_mb": mb(texts), "corpus_docs": len(texts)}
    result["ours"] = bench_ours(texts)
    print(json.dumps(result["ours"], indent=1), flush=True)
    result["reference_subsample"] = bench_reference(sub)
    print(json.dumps(result["reference_subsample"], indent=1), flush=True)
    for name, fn in BENCHES.items():
        result[name] = fn(texts, sub, args)
    r, o = result["reference_subsample"], result["ours"]
    result["summary"] = {
        "full_signal_set_cost_vs_one_cl100k_encode": o["full_over_tokenize_cost"],
        "goal_full_le_5x_tokenize": o["full_over_tokenize_cost"] <= 5,
        "heuristics_speedup_vs_datatrove_four_filters_same_subsample": r[
            "speedup_ours_heuristics_vs_datatrove_four_filters"
        ],
        "goal_ge_10x_faster_than_datatrove": r["speedup_ours_heuristics_vs_datatrove_four_filters"] >= 10,
        "identical_decisions": all(v == 0 for v in r["decision_mismatches"].values()),
    }
    print(json.dumps(result["summary"], indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
