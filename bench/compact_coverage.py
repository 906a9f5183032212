"""How many LM-head rows a held-out token coverage goal costs: the compact stage's kept-set choices on a run's curated
corpus and the model it trims (tokenizing only, ~1 min for the demo's 4M tokens).

    .venv/bin/python bench/compact_coverage.py --run runs/demo [--model runs/demo/models/gemma-code-tok/merged]

The training split is cut like the compact stage cuts it (``compact.select_share``): ``count`` (counted), ``select``
(chooses the row count) and the project's ``heldout`` split (checked). For each candidate kept set (every token the
counted text uses; plus the selection split's; plus the single-character letter tokens of the served scripts; plus the
tokenizer's first N ids as a frequency prior from its own training corpus; plus every case and leading-space variant of
the seen tokens (``▁Init`` seen keeps ``INIT``, ``init``, ``▁INIT``...); plus every all-ASCII token) it reports rows
and coverage of the selection and held-out splits, the rows a frequency-ranked set needs for each goal on the selection
split, and the held-out tokens no kept set saw (what they are). Writes ``bench/results/compact_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

from serving.quantize.compact import (  # noqa: E402
    PARTS,
    CompactConfig,
    case_variant_ids,
    choose_rows,
    count_tokens,
    iter_split,
    script_char_ids,
    served_scripts,
)
from tokenwise.config import load_section  # noqa: E402
from tokenwise.vocab import byte_token_ids, select_kept, special_ids  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def coverage(keep: set[int], counts: Counter[int]) -> float:
    total = sum(counts.values())
    return sum(n for g, n in counts.items() if g in keep) / total if total else float("nan")


def main() -> None:
    from transformers import AutoTokenizer  # heavy: deferred until used

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run dir with curated/ (and models/ for the default model)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="its compact: section")
    ap.add_argument("--model", default=None, help="tokenizer dir (default: the compact section's model)")
    ap.add_argument("--goals", type=float, nargs="*", default=[0.99, 0.995, 0.999])
    ap.add_argument("--prior", type=int, nargs="*", default=[10000, 30000, 50000, 120000], help="first-N-id priors")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_section(args.config, "compact", CompactConfig)
    model = args.model or str(Path(args.run) / "models" / cfg.model.removeprefix("run:"))
    tok = AutoTokenizer.from_pretrained(model)
    curated = Path(args.run) / "curated"
    share = cfg.select_share or 0.1
    parts = {p: count_tokens(tok, iter_split(curated, p, cfg.langs, cfg.domains, cfg.max_docs, share)) for p in PARTS}
    count, select, held = parts["count"], parts["select"], parts["heldout"]
    forced = set(special_ids(tok)) | set(byte_token_ids(tok).values())
    scripts = served_scripts(count + select, tok, cfg.script_min_share)
    chars = set(script_char_ids(tok, scripts))
    seen = set(count) | set(select)
    sets = {"counted": set(count) | forced, "counted+select": seen | forced,
            "counted+select+script_chars": seen | forced | chars}  # fmt: skip
    for n in args.prior:
        sets[f"counted+select+first_{n}_ids"] = seen | forced | set(range(min(n, len(tok))))
    vocab = tok.get_vocab()
    closure = seen | forced | set(case_variant_ids(tok, seen))
    ascii_ids = {i for p, i in vocab.items() if p.replace("\u2581", " ").isascii()}
    sets["counted+select+variants"] = closure
    sets["counted+select+variants+ascii"] = closure | ascii_ids
    rows = {name: {"rows": len(keep), "select_coverage": coverage(keep, select),
                   "heldout_coverage": coverage(keep, held)} for name, keep in sets.items()}  # fmt: skip
    ranked = select_kept(count, tok, 1.0, forced=False)
    goals = {}
    for g in args.goals:
        n, reached = choose_rows(ranked, forced, select, g)
        met = reached >= g
        keep = set(ranked[:n]) | forced
        goals[f"p{round(g * 1000)}"] = {  # p990 = 99.0%: no dot in the key (README claims address it)
            "met_on_select": met, "rows": len(keep) if met else None, "select_coverage": reached,
            "heldout_coverage": coverage(keep, held) if met else None}  # fmt: skip
    missing = Counter({g: n for g, n in held.items() if g not in seen})
    pieces = dict(zip(missing, tok.convert_ids_to_tokens(list(missing)), strict=True))
    single = [g for g in missing if len(pieces[g].lstrip("\u2581")) == 1]
    result = {
        "machine": machine(), "run": args.run, "model": model, "select_share": share,
        "tokens": {p: sum(c.values()) for p, c in parts.items()}, "vocab_size": len(tok),
        "served_scripts": scripts, "n_served_scripts": len(scripts), "script_char_tokens": len(chars),
        "sets": rows, "goals": goals,
        "heldout_unseen": {"distinct": len(missing), "tokens": sum(missing.values()),
                           "share": sum(missing.values()) / max(sum(held.values()), 1),
                           "single_character_distinct": len(single),
                           "single_character_tokens": sum(missing[g] for g in single),
                           "top": [[pieces[g], n] for g, n in missing.most_common(30)]},
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    out = RESULTS / "compact_coverage.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "heldout_unseen"}, indent=1, default=str)[:3000])
    print(f"wrote {out} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
