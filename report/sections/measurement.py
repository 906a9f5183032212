"""Report section "Measured savings" (outputs of the measure stage)."""

from __future__ import annotations

from report import charts
from report.charts import cdf_series
from report.context import Context
from report.html import Section, esc
from report.tables import stage_json
from serving.measure.ledger import read_ledger
from serving.measure.requests import read_requests


def measurement(ctx: Context) -> Section:
    summ = stage_json(ctx, "measure", "summary.json")

    rows = read_ledger(str(ctx.need("measure", "ledger.parquet")))
    base = summ["baseline"]
    sec = Section("measurement", f"Measured savings vs baseline “{base}”, with quality beside them")
    stacks = summ["stacks"]
    names = list(stacks)
    t = [
        [
            "stack",
            "lever",
            "billed tokens",
            "baseline tokens (same text)",
            "saved tokens %",
            "cost USD",
            "saved cost %",
            "target fwd / out token",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TPOT p50 ms",
            "goodput req/s",
            "bits/byte",
            "bits/byte Δ%",
            "chrF",
            "chrF Δ",
        ]
    ]
    for n, x in stacks.items():
        t.append(
            [
                n,
                x["lever"],
                x["billed_tokens"],
                x.get("baseline_tokens"),
                100 * x["saved_tokens_share"],
                x["spend"],
                100 * x["saved_spend_share"],
                x["forward_passes_per_output_token"],
                x["ttft_ms"]["p50"],
                x["ttft_ms"]["p99"],
                x["tpot_ms"]["p50"],
                x["goodput"]["goodput_rps"],
                x["bits_per_byte_mean"],
                100 * x["bits_per_byte_delta_rel"],
                x["quality_mean"],
                x["quality_delta"],
            ]
        )
    basis = summ.get("baseline_tokenizer") or "the baseline's tokenizer"
    sec.tables.append((f"Every stack on the same {summ['requests']} held-out requests; baseline tokens = {basis} on "
                       "each stack's own prompt and completion text", t))  # fmt: skip
    levers = summ["levers"]
    sec.tables.append(("Per lever, added one at a time: change in billed tokens (cost) per baseline token (cost) of "
                       "the text handled, with the quality change beside it", _lever_table(levers)))  # fmt: skip
    sec.charts.append(
        charts.hbar(
            "measure_savings_per_lever",
            "Tokens saved by each lever (share of the baseline's tokens on the same text; quality in the table)",
            [lv["lever"] for lv in levers],
            {"tokens saved (points)": [100 * _share(lv) for lv in levers]},
            xlabel="share points of baseline tokens",
            ylabel="lever",
        )
    )
    langs = sorted({g["language"] for g in summ["by_language"]})
    by_lang = {(g["stack"], g["language"]): g for g in summ["by_language"]}
    opt = [n for n, x in stacks.items() if not x.get("after")][-1]  # the last cumulative stack (not a side stack)
    sec.charts.append(
        charts.hbar(
            "measure_savings_per_language",
            f"Billed tokens saved per language: {opt} vs {base} (same text, baseline tokenizer; quality in the table)",
            langs,
            {opt: [100 * by_lang[(opt, lg)]["saved_tokens_share"] if (opt, lg) in by_lang else None for lg in langs]},
            xlabel="tokens saved (% of baseline)",
            ylabel="language",
        )
    )
    sec.tables.append((f"Per language: {opt} vs {base}", _group_table(summ["by_language"], opt, "language")))
    if summ.get("by_domain"):
        sec.tables.append((f"Per domain: {opt} vs {base}", _group_table(summ["by_domain"], opt, "domain")))
    spec = [(n, x["speculative"]) for n, x in stacks.items() if x.get("speculative")]
    if spec:
        sec.tables.append(("Speculation: predicted E/(k·c+v) beside the measured speedup; requests where it switched "
                           "itself off (acceptance predicted a loss)", _spec_table(spec)))  # fmt: skip

    for cid, title, key, xlabel in (
        ("measure_latency_cdf", "Request latency CDF per stack", "request_duration_ms", "request duration (ms)"),
        ("measure_ttft_cdf", "Time to first token CDF per stack", "ttft_ms", "TTFT (ms)"),
    ):
        ok = {n: [r[key] for r in rows if r["stack"] == n and r["status"] == "success"] for n in names}
        series = {n: cdf_series(v) for n, v in ok.items()}
        sec.charts.append(charts.lines(cid, title, series, xlabel=xlabel, ylabel="share of requests"))
    sec.charts.append(
        charts.lines(
            "measure_cost_quality",
            "Cost vs quality per stack (bits per byte: lower is better)",
            {
                n: ([stacks[n]["spend"] * 1e6 / max(1, stacks[n]["requests"])], [stacks[n]["bits_per_byte_mean"]])
                for n in names
            },
            xlabel="cost per million requests (USD)",
            ylabel="bits per byte",
            points=True,
        )
    )
    have = ctx.run.exists("measure", "requests.jsonl")
    reqs = {r["request_id"]: r for r in read_requests(ctx.run.path("measure", "requests.jsonl"))} if have else {}
    examples = example_answers(rows, names, reqs)
    for title, table in examples:
        sec.tables.append((title, table))
    sec.data = {
        "examples": [{"title": t, "rows": tb[1:]} for t, tb in examples],
        "baseline": base,
        "stacks": {n: {k: v for k, v in x.items() if not isinstance(v, dict)} for n, x in stacks.items()},
        "levers": levers,
    }
    last = stacks[opt]
    sec.data["headline"] = (
        f"{opt} vs {base}: {100 * last['saved_tokens_share']:.1f}% tokens and "
        f"{100 * last['saved_spend_share']:.1f}% cost saved, bits/byte "
        f"{100 * last['bits_per_byte_delta_rel']:+.1f}%"
    )
    sec.intro = esc(
        sec.data["headline"] + f". Savings count the same requests, each stack's own text recounted with {basis}; "
        "quality (bits per byte of the reference, chrF) stands beside every figure."
    )
    return sec


def _share(lv: dict) -> float:
    return lv.get("saved_tokens_share", 0.0)


def _lever_table(levers: list[dict]) -> list[list]:
    t = [["lever", "from → to", "tokens saved (points)", "tokens at baseline volume", "cost saved (points)",
          "chrF Δ", "bits/byte Δ"]]  # fmt: skip
    for lv in levers:
        t.append([lv["lever"], f"{lv['from_stack']} → {lv['to_stack']}", 100 * _share(lv), lv["billed_tokens_saved"],
                  100 * lv.get("saved_spend_share", 0.0), lv["quality_delta"], lv["bits_per_byte_delta"]])  # fmt: skip
    return t


def _group_table(records: list[dict], stack: str, key: str) -> list[list]:
    t = [[key, "requests", "billed tokens", "baseline tokens", "saved tokens %", "saved cost %", "chrF Δ",
          "bits/byte Δ%"]]  # fmt: skip
    for g in records:
        if g["stack"] == stack:
            t.append([g[key], g["requests"], g["billed_tokens"], g["baseline_tokens"], 100 * g["saved_tokens_share"],
                      100 * g["saved_spend_share"], g.get("quality_delta"),
                      100 * g.get("bits_per_byte_delta_rel", float("nan"))])  # fmt: skip
    return t


def _spec_table(spec: list[tuple[str, dict]]) -> list[list]:
    t = [["stack", "acceptance", "mean accepted length", "c", "v", "predicted speedup", "measured (tokens/s vs)",
          "measured in server", "switched off"]]  # fmt: skip
    for n, sp in spec:
        vs = f"{sp['measured_speedup']:.2f}x vs {sp['measured_speedup_vs']}" if sp.get("measured_speedup") else "n/a"
        t.append([n, sp.get("draft_acceptance_rate"), sp.get("mean_acceptance_length"), sp.get("c"), sp.get("v"),
                  sp.get("predicted_speedup"), vs, sp.get("measured_speedup_in_server"),
                  f"{sp.get('auto_off_requests', 0)} of {sp.get('requests', 0)}"])  # fmt: skip
    return t


def example_answers(
    rows: list[dict], names: list[str], requests: dict[str, dict], n: int = 3
) -> list[tuple[str, list[list]]]:
    """Side-by-side answers of every stack to ``n`` requests (one per domain first, then per language), under the
    prompt's end and the held-out reference continuation."""
    ok = [r for r in rows if r["status"] == "success"]
    by_req: dict[str, dict[str, dict]] = {}
    for r in ok:
        by_req.setdefault(r["request_id"], {})[r["stack"]] = r
    complete = [rid for rid, got in sorted(by_req.items()) if all(s in got for s in names)]
    picked: list[str] = []
    for key in ("domain", "language"):
        for rid in complete:
            first = by_req[rid][names[0]]
            if rid not in picked and first[key] not in {by_req[p][names[0]][key] for p in picked}:
                picked.append(rid)
            if len(picked) == n:
                break
    out = []
    for rid in picked[:n]:
        got = by_req[rid]
        meta = got[names[0]]
        table = [["stack", "model", "answer", "chrF", "bits/byte"]]
        req = requests.get(rid)
        if req:
            table += [["(prompt, last 160 chars)", "", "…" + req["prompt"][-160:], None, None],
                      ["(held-out reference)", "", req["reference"], None, None]]  # fmt: skip
        table += [[s, got[s]["model"], got[s]["completion_text"], got[s]["quality_value"], got[s]["bits_per_byte"]]
                  for s in names]  # fmt: skip
        out.append((f"Example answers to {rid} ({meta['language']}, {meta['domain']})", table))
    return out
