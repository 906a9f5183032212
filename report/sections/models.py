"""Report section "Models" (outputs of the source, lora, compact, pretrain and adapt stages): where each served model
came from (licence), what fine-tuning did to held-out bits per byte, what vocabulary trimming and int8 cost and
bought, and whether the tokenizer lever kept quality within the routing budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from report.context import Context, Unavailable
from report.html import Section, esc

LICENCE_FILES = ("GEMMA_TERMS.html", "LICENSE", "LICENSE.txt", "LICENCE")


def _read(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text(encoding="utf-8"))


def _models(ctx: Context) -> Path:
    root = Path(ctx.run.path("models"))
    if not root.is_dir():
        hint = ctx.commands.get("models", "tokenwise models fetch")
        raise Unavailable(f"models/ not found in {ctx.run.root}; run `{hint}` first")
    return root


def sources_table(root: Path) -> list[list[Any]]:
    rows = [["model", "source", "type", "parameters", "vocabulary", "sha256", "licence file"]]
    for f in sorted(root.glob("*/source.json")):
        s = _read(f)
        lic = next((n for n in LICENCE_FILES if (f.parent / n).is_file()), "")
        rows.append([f.parent.name, s.get("source"), s.get("model_type"), s.get("params"), s.get("vocab_size"),
                     (s.get("sha256") or s.get("content_hash") or "")[:16], lic])  # fmt: skip
    return rows


def training_table(root: Path) -> list[list[Any]]:
    rows = [["model", "recipe", "steps", "trainable share", "held-out bpb before", "after", "Δ", "train s"]]
    for f in sorted(root.glob("*/metrics.json")):
        m = _read(f)
        if m.get("method") != "lora" or m.get("bits_per_byte_before") is None:
            continue
        before, after = m["bits_per_byte_before"], m.get("eval_bits_per_byte")
        recipe = "adapt (new tokenizer rows + LoRA)" if "eval_tokens" in m else "LoRA"
        rows.append([f.parent.name, recipe, m.get("steps"), m.get("trainable_share"), before, after,
                     after - before if after is not None else None, m.get("train_seconds")])  # fmt: skip
    for f in sorted(root.glob("*/metrics.json")):
        m = _read(f)
        if "params" in m and "spec" in m:  # pretrain: models trained from scratch (drafters)
            rows.append([f.parent.name, "from scratch" + (" (kept vocab)" if m["spec"].get("vocab") else ""),
                         m["spec"].get("steps"), 1.0, None, m.get("eval_bits_per_byte"), None,
                         m.get("train_seconds")])  # fmt: skip
    return rows


def compaction(root: Path) -> tuple[list[list[Any]], list[list[Any]], dict[str, Any]] | None:
    found = sorted(root.glob("*/compact_report.json"))
    if not found:
        return None
    r = _read(found[0])
    rows = [["variant", "weight MB", "size ×", "tokens/s", "speed ×", "bits/byte", "bpb Δ", "greedy identical",
             "token agreement"]]  # fmt: skip
    for name, m in r["models"].items():
        g = m.get("greedy_agreement") or {}
        rows.append([name, m["weight_bytes"] / 1e6, m.get("size_ratio", 1.0), m["tokens_per_second"],
                     m.get("speed_ratio", 1.0), m["bits_per_byte"], m.get("bits_per_byte_delta", 0.0),
                     g.get("identical_share", 1.0), g.get("token_agreement", 1.0)])  # fmt: skip
    examples = [["variant", *[f"prompt {i + 1}" for i in range(min(3, r["prompts"]))]]]
    for name, m in r["models"].items():
        examples.append([name, *m["outputs"][:3]])
    return rows, examples, r


def tokenizer_lever(root: Path, budget: float, in_stacks: bool) -> tuple[list[list[Any]], str] | None:
    for f in sorted(root.glob("*/metrics.json")):
        m = _read(f)
        if "eval_tokens" not in m:
            continue
        t = m["eval_tokens"]
        old_bpb, new_bpb = m["bits_per_byte_old_model"], m["eval_bits_per_byte"]
        share = old_bpb / new_bpb if new_bpb else 0.0
        rows = [["model", "new tokens", "tokens per request before", "after", "saved", "bpb before (old tokenizer)",
                 "bpb at init", "bpb after", "quality share"],
                [f.parent.name, m["new_token_ids"], t.get("old_tokens_per_doc", t["old_tokens"]),
                 t.get("new_tokens_per_doc", t["new_tokens"]), t["saved_share"], old_bpb, m.get("bits_per_byte_init"),
                 new_bpb, share]]  # fmt: skip
        within = share >= budget
        verdict = (
            f"the tokenizer lever keeps {100 * share:.1f}% of the quality (bytes per bit), "
            f"{'within' if within else 'below'} the routing budget of {100 * budget:.0f}%; the measured stacks "
            f"{'include' if in_stacks else 'leave out'} the lever"
            + ("" if within != in_stacks else " (as the budget says)")
            + (" even though it is below budget" if in_stacks and not within else "")
        )
        return rows, verdict
    return None


def models(ctx: Context) -> Section:
    root = _models(ctx)
    sec = Section("models", "Models: sources, fine-tuning, compaction, tokenizer lever")
    src = sources_table(root)
    if len(src) > 1:
        sec.tables.append(("Pretrained models brought into the run (converted once, checksum-verified)", src))
    train = training_table(root)
    if len(train) > 1:
        sec.tables.append(("Training: held-out bits per byte before and after (lower is better)", train))
    comp = compaction(root)
    intro = []
    if comp:
        rows, examples, r = comp
        sec.tables.append((f"Vocabulary trimming: {r['kept']:,} of {r['vocab_size']:,} tokens kept, vs the untrimmed "
                           f"model on {r['prompts']} held-out prompts", rows))  # fmt: skip
        sec.tables.append(("Greedy answers of each variant (the same held-out prompts)", examples))
        intro.append(f"held-out token coverage {100 * r['heldout_coverage']:.2f}% "
                     f"(goal {100 * r['goal_coverage']:.1f}%: {'met' if r['coverage_met'] else 'not met'}; tokens "
                     "outside the kept set are respelled with kept pieces)")  # fmt: skip
    router = Path(ctx.run.path("serve", "router.json"))
    budget = (_read(router).get("budget") or {}).get("min_quality") if router.is_file() else None
    summary = Path(ctx.run.path("measure", "summary.json"))
    levers = [s.get("lever") for s in _read(summary)["stacks"].values()] if summary.is_file() else []
    lever = tokenizer_lever(root, budget or 0.95, "tokenizer" in levers)
    if lever:
        sec.tables.append(("Tokenizer lever on the real model (held-out domain documents)", lever[0]))
        intro.append(lever[1])
    if len(sec.tables) == 0:
        raise Unavailable("no model outputs (source.json, metrics.json, compact_report.json) under models/")
    sec.intro = esc("; ".join(intro) + ("." if intro else ""))
    sec.data = {"sources": src[1:], "training": train[1:], "compaction": comp[2] if comp else None,
                "tokenizer_lever": lever[1] if lever else None}  # fmt: skip
    return sec
