"""Report section "Routing by cost per request" (serve/router.json's cost routers, the measure ledger's cost stack).

Two real models with different tokenizers: the cost-per-request router against a price-per-token router,
always-large and always-small, per language, on held-out requests (half of each language x domain calibrates, the
other half is measured); and, when the measurement ran a ``router-cost`` stack, which model answered per language and
how many requests fell back to the largest model because their language was never calibrated.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from report import charts
from report.context import Context, Unavailable
from report.html import Section, esc
from report.tables import stage_json
from serving.measure.ledger import read_ledger

STRATEGIES = ("cost_per_request", "price_per_token", "always_large", "always_small")


def routing(ctx: Context) -> Section:
    calib = stage_json(ctx, "serve", "router.json")
    cost = calib.get("cost")
    if not cost or "held_out" not in cost:
        raise Unavailable("serve/router.json has no cost-router calibration with a held-out half; rerun `tokenwise "
                          "serve calibrate` (serve.router.cost_models, >= 2 requests per language x domain)")
    held, table = cost["held_out"], cost["table"]
    names = table["order"]
    small, large = names[0], names[-1]
    sec = Section("routing", f"Routing by cost per request: {small} vs {large} (different tokenizers)")
    t = [["group", "requests", *[f"{s} cost / large" for s in STRATEGIES[:2]], *[f"{s} quality" for s in STRATEGIES],
          f"{STRATEGIES[0]} → {small}", f"{STRATEGIES[1]} → {small}"]]  # fmt: skip
    for g, row in held["groups"].items():
        t.append([g.removeprefix("lang:"), row["always_large"]["requests"],
                  *[row[s]["cost_vs_large"] for s in STRATEGIES[:2]], *[row[s]["quality_share"] for s in STRATEGIES],
                  row[STRATEGIES[0]]["small_share"], row[STRATEGIES[1]]["small_share"]])  # fmt: skip
    n = held["requests"]
    sec.tables.append((f"Held-out requests ({n['calibration']} calibrate, {n['test']} measured): cost relative to "
                       "always-large, quality as a share of always-large's (bytes per bit of the reference), share "
                       f"answered by {small}", t))  # fmt: skip
    langs = sorted(k for k in table["models"][large]["languages"])
    prem = [["language", f"{small} / {large} prompt tokens", f"{small} length ratio", f"{large} length ratio",
             f"{small} quality share"]]  # fmt: skip
    for lg in langs:
        s, lg_large = table["models"][small]["languages"].get(lg), table["models"][large]["languages"][lg]
        if s is None:
            continue
        prem.append([lg, s["prompt_tokens"] / max(lg_large["prompt_tokens"], 1), s["length_ratio"],
                     lg_large["length_ratio"], s["quality"] / lg_large["quality"] if lg_large["quality"] else None])
    sec.tables.append(("Calibration per language: each model's own tokens on the same prompts (the premium), "
                       "completion/prompt length ratio, quality share", prem))  # fmt: skip
    groups = [g for g in held["groups"] if g.startswith("lang:")]
    sec.charts.append(charts.hbar(
        "routing_cost_per_language", "Cost relative to always-large per language (quality in the table)",
        [g.removeprefix("lang:") for g in groups],
        {s: [held["groups"][g][s]["cost_vs_large"] for g in groups] for s in STRATEGIES[:2]},
        xlabel="cost / always-large", ylabel="language"))  # fmt: skip
    goals = held["goals"]
    floors = cost["floors"]
    g_met = "met" if goals["goal_overall"] else "not met"
    ne_g = held["groups"].get("non_english") or {}
    better = bool(ne_g) and ne_g[STRATEGIES[0]]["quality"] >= ne_g[STRATEGIES[1]]["quality"] - 1e-12
    ne = "equal or better" if better else "lower"
    intro = (f"Cost per request = each model's own prompt tokens + the expected completion (length ratio of the "
             f"language and domain) x its prices. On the held-out half: "
             f"{100 * goals['overall_cost_reduction_vs_large']:.1f}% lower cost than always-large at "
             f"{100 * goals['overall_quality_share']:.1f}% of its quality (goal >= 30% at >= 95%: {g_met}); "
             f"non-English cost vs the price-per-token router {_x(goals['non_english_cost_vs_price_per_token'])} "
             f"at {ne} quality. Quality floors: cost {floors['per_request']['floor']:.3f}, price "
             f"{floors['per_token']['floor']:.3f} (calibrated for >= {100 * cost['budget_min_quality']:.0f}% of "
             "always-large's quality). bench/route_cost.py measures the same on more requests.")
    ledger = ctx.run.path("measure", "ledger.parquet")
    served: dict = {}
    if ctx.run.exists("measure", "ledger.parquet"):
        every = read_ledger(str(ledger))
        measured = measured_by_language(ctx, every)
        if measured:
            sec.tables.append(measured)
            served["measured"] = measured[1][1:]
        routed = [r for r in every if r.get("route_reason") and r["status"] == "success"]
        own = [r for r in routed if r.get("lever") in ("routing", "cost_routing")] or routed  # the routing stack
        rows = [r for r in own if r["stack"] == own[0]["stack"]] if own else []  # one stack: each request once
        by = defaultdict(Counter)
        for r in rows:
            by[r["language"]][r["model"]] += 1
        fallbacks = sum(bool(r.get("route_fallback")) for r in rows)
        if rows:
            models = sorted({r["model"] for r in rows})
            t2 = [["language", *models]] + [[lg, *[c[m] for m in models]] for lg, c in sorted(by.items())]
            sec.tables.append((f"Measured stack “{rows[0]['stack']}”: which model answered per language "
                               f"({fallbacks} of {len(rows)} fell back: language never calibrated)", t2))  # fmt: skip
            served.update(stack=rows[0]["stack"], fallbacks=fallbacks, by_language={k: dict(v) for k, v in by.items()})
    sec.intro = esc(intro)
    sec.data = {"groups": held["groups"], "goals": goals, "floors": floors, "served": served}
    return sec


def measured_by_language(ctx: Context, rows: list[dict]) -> tuple[str, list[list]] | None:
    """Per language, the measurement's side stacks (cost routing, price routing, always-small) beside the stack they
    are measured against (always-large): spend and bits per byte of the same requests, from the ledger. Without side
    stacks, the cumulative routing stack beside the stack before it."""
    if not ctx.run.exists("measure", "summary.json"):
        return None
    stacks = stage_json(ctx, "measure", "summary.json")["stacks"]
    side = [n for n, t in stacks.items() if t.get("after")]
    if not side:
        order = list(stacks)
        routing = [n for n in order[1:] if stacks[n].get("lever") in ("routing", "cost_routing")]
        if not routing:
            return None
        stacks = {**stacks, routing[0]: {**stacks[routing[0]], "after": order[order.index(routing[0]) - 1]}}
        side = routing[:1]
    ref = stacks[side[0]]["after"]
    names = [ref, *[n for n in side if stacks[n]["after"] == ref]]
    agg: dict = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0]))
    for r in rows:
        if r["stack"] in names and r["status"] == "success" and r.get("bits_per_byte") is not None:
            a = agg[r["language"]][r["stack"]]
            a[0] += r["spend"]
            a[1] += r["bits_per_byte"]
            a[2] += 1
    t = [["language", *[f"{n} cost / {ref}" for n in names[1:]], *[f"{n} bits/byte" for n in names]]]
    for lg in sorted(agg):
        g = agg[lg]
        if not all(n in g for n in names):
            continue
        t.append([lg, *[g[n][0] / g[ref][0] if g[ref][0] else None for n in names[1:]],
                  *[g[n][1] / g[n][2] for n in names]])  # fmt: skip
    return (f"Measured through the servers (measure ledger, same requests): cost relative to {ref} (always-large) "
            "and bits per byte per language", t)  # fmt: skip


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"
