"""Aggregate a ledger: per stack, per language and domain, per lever; prompt-side cacheable tokens.

Honesty rules: every savings figure names its baseline, is computed on the same requests (rows joined by
``request_id``) and on the same text (the baseline's tokenizer on each row's own prompt and completion, see
:mod:`ledger`), and carries the quality delta beside it.

Per lever: stacks add one lever at a time, and each stack's answers are different text, so a lever is worth the
change in **billed tokens per baseline token** of the text handled (``billed_tokens / baseline_tokens``); the changes
add up exactly to the last stack's saved share (minus the baseline's own, which is not 0 when a model writes token
sequences its tokenizer would not produce). In tokens, that change is applied to the baseline stack's token volume.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from serving.measure.slo import goodput, percentile


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def stack_totals(rows: Sequence[dict], wall_s: float, slo: dict[str, float | None]) -> dict[str, Any]:
    """Totals and distributions of one group of ledger rows (one stack, optionally one language/domain)."""
    ok = [r for r in rows if r["status"] == "success"]
    out_tok = sum(r["completion_tokens"] for r in ok)
    fwd = sum(r["target_forward_passes"] or 0 for r in ok)
    proposed = sum(r["draft_tokens_proposed"] or 0 for r in ok)
    accepted = sum(r["draft_tokens_accepted"] or 0 for r in ok)
    t = {
        "requests": len(rows),
        "failed": len(rows) - len(ok),
        "prompt_tokens": sum(r["prompt_tokens"] for r in ok),
        "completion_tokens": out_tok,
        "billed_tokens": sum(r["total_tokens"] for r in ok),
        "baseline_tokens": sum(r["baseline_total_tokens"] for r in ok),
        "baseline_prompt_tokens": sum(r["baseline_prompt_tokens"] for r in ok),
        "baseline_completion_tokens": sum(r["baseline_completion_tokens"] for r in ok),
        "saved_tokens": sum(r["saved_tokens"] for r in ok),
        "spend": sum(r["spend"] for r in ok),
        "baseline_spend": sum(r["baseline_spend"] for r in ok),
        "saved_spend": sum(r["saved_spend"] for r in ok),
        "input_bytes": sum(r["input_bytes"] for r in ok),
        "output_bytes": sum(r["output_bytes"] for r in ok),
        "target_forward_passes": fwd,
        "forward_passes_per_output_token": fwd / out_tok if out_tok else math.nan,
        "draft_tokens_proposed": proposed,
        "draft_tokens_accepted": accepted,
        "acceptance_rate": accepted / proposed if proposed else None,
        "escalations": sum(r["escalations"] or 0 for r in ok),
        "routed_models": _counts(r["routed_model"] for r in ok),
        "quality_mean": _mean([r["quality_value"] for r in ok]),
        "bits_per_byte_mean": _mean([r["bits_per_byte"] for r in ok]),
        "tokens_per_second_mean": _mean([r["tokens_per_second"] for r in ok]),
        "spec_auto_off_requests": sum(bool(r.get("spec_auto_off")) for r in ok),
    }
    for key in ("ttft_ms", "tpot_ms", "request_duration_ms"):
        vals = [r[key] for r in ok]
        t[key] = {f"p{q}": percentile(vals, q) for q in (50, 90, 99)}
    t["saved_tokens_share"] = t["saved_tokens"] / t["baseline_tokens"] if t["baseline_tokens"] else math.nan
    t["saved_spend_share"] = t["saved_spend"] / t["baseline_spend"] if t["baseline_spend"] else math.nan
    t["billed_per_baseline_token"] = t["billed_tokens"] / t["baseline_tokens"] if t["baseline_tokens"] else math.nan
    t["spend_per_baseline_spend"] = t["spend"] / t["baseline_spend"] if t["baseline_spend"] else math.nan
    t["goodput"] = goodput(rows, wall_s, slo.get("ttft_ms"), slo.get("tpot_ms"))
    return t


def _counts(items) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for i in items:
        out[str(i)] += 1
    return dict(out)


def by_group(rows: Sequence[dict], keys: Sequence[str], wall: dict[str, float], slo: dict) -> list[dict[str, Any]]:
    """Totals per stack × the given keys (e.g. ``("language",)``), as flat records."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["stack"], *(r[k] for k in keys))].append(r)
    out = []
    for g, rs in sorted(groups.items()):
        rec = {"stack": g[0], **dict(zip(keys, g[1:], strict=True))}
        rec.update(stack_totals(rs, wall.get(g[0], math.nan), slo))
        out.append(rec)
    return out


def with_quality_delta(totals: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Add the quality change vs the baseline beside every stack's savings (relative, bits-per-byte and chrF)."""
    b = totals[baseline]
    for t in totals.values():
        _quality_delta(t, b)
        t["baseline"] = baseline
    return totals


def _quality_delta(t: dict, b: dict) -> None:
    t["quality_delta"] = t["quality_mean"] - b["quality_mean"]
    t["quality_delta_rel"] = t["quality_delta"] / b["quality_mean"] if b["quality_mean"] else math.nan
    bb = b["bits_per_byte_mean"]
    t["bits_per_byte_delta_rel"] = (t["bits_per_byte_mean"] - bb) / bb if bb and not math.isnan(bb) else math.nan


def with_group_quality_delta(records: list[dict], baseline: str, keys: Sequence[str]) -> list[dict]:
    """:func:`with_quality_delta` for :func:`by_group` records: each against the baseline stack's same group."""
    base = {tuple(r[k] for k in keys): r for r in records if r["stack"] == baseline}
    for r in records:
        b = base.get(tuple(r[k] for k in keys))
        if b is not None:
            _quality_delta(r, b)
    return records


def decompose(totals: dict[str, dict], order: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
    """Savings attributed to each lever: stacks measured with levers added one at a time.

    ``order`` is ``[(stack, lever_it_adds[, after]), ...]`` starting with the baseline (lever ``baseline``); ``after``
    names the stack a side stack is compared with (default: the one before it). Each lever's value
    is the change in billed tokens (and spend) per baseline-tokenizer token (and baseline spend) of the text handled,
    between the stack before it and the stack with it, on the same requests in the same run: as share points of the
    baseline, and in tokens / USD at the baseline stack's volume. The quality change sits beside it.
    """
    b = totals[order[0][0]]
    out = []
    for i, item in enumerate(order[1:], 1):  # (stack, lever[, after]): a side stack names the stack it changes
        cur, lever = item[0], item[1]
        prev = item[2] if len(item) > 2 and item[2] else order[i - 1][0]
        p, c = totals[prev], totals[cur]
        tok_pts = p["billed_per_baseline_token"] - c["billed_per_baseline_token"]
        usd_pts = p["spend_per_baseline_spend"] - c["spend_per_baseline_spend"]
        out.append({
            "lever": lever, "from_stack": prev, "to_stack": cur,
            "saved_tokens_share": tok_pts, "saved_spend_share": usd_pts,
            "billed_tokens_saved": tok_pts * b["baseline_tokens"], "spend_saved": usd_pts * b["baseline_spend"],
            "forward_passes_per_output_token": [p["forward_passes_per_output_token"],
                                                c["forward_passes_per_output_token"]],
            "ttft_p50_ms": [p["ttft_ms"]["p50"], c["ttft_ms"]["p50"]],
            "request_duration_p50_ms": [p["request_duration_ms"]["p50"], c["request_duration_ms"]["p50"]],
            "quality_delta": c["quality_mean"] - p["quality_mean"],
            "bits_per_byte_delta": c["bits_per_byte_mean"] - p["bits_per_byte_mean"],
        })  # fmt: skip
    return out


def decompose_by_group(records: list[dict], order: Sequence[tuple[str, ...]], key: str) -> dict[str, list[dict]]:
    """:func:`decompose` within each value of ``key`` (language, domain) where every stack has that group."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in records:
        groups[r[key]][r["stack"]] = r
    stacks = [item[0] for item in order]
    return {g: decompose(t, order) for g, t in sorted(groups.items()) if all(s in t for s in stacks)}


def cacheable_prefixes(prompts: Sequence[tuple[str, list[int]]], min_tokens: int = 4) -> dict[str, Any]:
    """Prompt-side lever: exact duplicate prompts and shared prefixes with any earlier prompt, in tokens.

    ``prompts`` is ``[(request_id, token_ids)]`` in arrival order; a prefix shared with an earlier prompt (at least
    ``min_tokens`` long) could be served from a prefix cache, so its tokens are counted as cacheable.
    """
    seen_exact: set[tuple[int, ...]] = set()
    trie: dict = {}
    exact = cacheable = total = 0
    for _, ids in prompts:
        total += len(ids)
        key = tuple(ids)
        if key in seen_exact:
            exact += 1
            cacheable += len(ids)
            continue
        node, depth = trie, 0
        while depth < len(ids) and ids[depth] in node:
            node = node[ids[depth]]
            depth += 1
        cacheable += depth if depth >= min_tokens else 0
        node = trie
        for t in ids:
            node = node.setdefault(t, {})
        seen_exact.add(key)
    return {
        "prompts": len(prompts), "exact_duplicates": exact, "prompt_tokens": total,
        "cacheable_tokens": cacheable, "cacheable_share": cacheable / total if total else 0.0,
    }  # fmt: skip
