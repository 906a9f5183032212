"""Project monthly tokens, cost, GPU-hours and savings for a workload from measured per-byte rates.

A workload profile lists traffic by language and domain (requests per day, bytes in/out per request). Each stack's
rates come from the ledger rows of that language and domain (falling back to the language, then to all rows, and
saying so): prompt tokens per input byte, completion tokens per output byte, spend per token, and decode tokens/s.
Savings are on the ledger's same-text basis: the baseline's tokens (and cost) for a stack's traffic use the baseline
tokenizer's rate on that stack's own measured text, not the baseline stack's rate on its different answers.
Intervals are bootstrap 95% intervals over the measured requests, carried through the projection.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from tokenwise.config import BaseConfig, ConfigError, read_yaml, validate_section


class Traffic(BaseConfig):
    """One slice of traffic."""

    language: str = Field(..., description="Language code as in the ledger (e.g. hi, de, en).")
    domain: str | None = Field(None, description="Domain (ui, code, docs); none = all domains of the language.")
    requests_per_day: float = Field(..., ge=0, description="Requests per day.")
    input_bytes: float = Field(..., ge=0, description="Mean UTF-8 bytes of prompt per request.")
    output_bytes: float = Field(..., ge=0, description="Mean UTF-8 bytes of completion per request.")


class Workload(BaseConfig):
    """A workload profile (``tokenwise measure project --workload W.yaml``)."""

    name: str = "workload"
    days_per_month: float = Field(30.0, gt=0)
    traffic: list[Traffic] = Field(..., min_length=1)


def load_workload(path: str) -> Workload:
    """Load and validate a workload YAML (errors name file, line and key)."""
    data, lines = read_yaml(path)
    if "workload" not in data:
        raise ConfigError(f"{path}: expected a top-level `workload:` mapping")
    return validate_section(data, Workload, str(path), "workload", lines)


def _rates(rows: Sequence[dict]) -> dict[str, float]:
    ib = sum(r["input_bytes"] for r in rows) or 1
    ob = sum(r["output_bytes"] for r in rows) or 1
    pt, ct = sum(r["prompt_tokens"] for r in rows), sum(r["completion_tokens"] for r in rows)
    dur = sum(max(r["request_duration_ms"] - r["ttft_ms"], 1e-6) for r in rows) / 1000
    bt = sum(r.get("baseline_total_tokens") or 0 for r in rows)
    return {
        "prompt_tokens_per_byte": pt / ib,
        "completion_tokens_per_byte": ct / ob,
        "spend_per_prompt_token": sum(r["spend_prompt"] for r in rows) / pt if pt else 0.0,
        "spend_per_completion_token": sum(r["spend_completion"] for r in rows) / ct if ct else 0.0,
        "decode_tokens_per_second": ct / dur if dur else 0.0,
        # the baseline tokenizer on this stack's own text (the ledger's counterfactual columns)
        "baseline_prompt_tokens_per_byte": sum(r.get("baseline_prompt_tokens") or 0 for r in rows) / ib,
        "baseline_completion_tokens_per_byte": sum(r.get("baseline_completion_tokens") or 0 for r in rows) / ob,
        "baseline_spend_per_token": sum(r.get("baseline_spend") or 0.0 for r in rows) / bt if bt else 0.0,
    }


def _project_slice(rates: dict[str, float], t: Traffic, days: float) -> dict[str, float]:
    n = t.requests_per_day * days
    pt = n * t.input_bytes * rates["prompt_tokens_per_byte"]
    ct = n * t.output_bytes * rates["completion_tokens_per_byte"]
    tps = rates["decode_tokens_per_second"]
    bt = n * (t.input_bytes * rates["baseline_prompt_tokens_per_byte"]
              + t.output_bytes * rates["baseline_completion_tokens_per_byte"])  # fmt: skip
    return {
        "requests": n, "prompt_tokens": pt, "completion_tokens": ct, "tokens": pt + ct,
        "cost": pt * rates["spend_per_prompt_token"] + ct * rates["spend_per_completion_token"],
        "gpu_hours": ct / tps / 3600 if tps else float("nan"),
        "baseline_tokens": bt, "baseline_cost": bt * rates["baseline_spend_per_token"],
    }  # fmt: skip


def _select(rows: Sequence[dict], stack: str, t: Traffic) -> tuple[list[dict], str]:
    mine = [r for r in rows if r["stack"] == stack and r["status"] == "success"]
    exact = [r for r in mine if r["language"] == t.language and (t.domain is None or r["domain"] == t.domain)]
    if exact:
        return exact, "measured"
    lang = [r for r in mine if r["language"] == t.language]
    if lang:
        return lang, f"no {t.domain} requests measured for {t.language}: language-wide rates"
    return mine, f"no {t.language} requests measured: rates of all languages (an assumption, not a measurement)"


def project(rows: Sequence[dict], workload: Workload, stacks: Sequence[str], baseline: str,
            boot: int = 200, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Monthly projection per stack with bootstrap 95% intervals, and savings vs the baseline stack."""
    rng = random.Random(seed)
    out: dict[str, Any] = {"workload": workload.model_dump(), "baseline": baseline, "stacks": {}, "notes": []}
    keys = ("requests", "prompt_tokens", "completion_tokens", "tokens", "cost", "gpu_hours", "baseline_tokens",
            "baseline_cost")  # fmt: skip
    samples: dict[str, list[dict[str, float]]] = {}
    for stack in stacks:
        point = dict.fromkeys(keys, 0.0)
        draws = [dict.fromkeys(keys, 0.0) for _ in range(boot)]
        for t in workload.traffic:
            sel, note = _select(rows, stack, t)
            if not sel:
                raise ValueError(f"stack {stack!r} has no successful requests in the ledger")
            if note != "measured":
                out["notes"].append(f"{stack} · {t.language}/{t.domain or '*'}: {note}")
            for k, v in _project_slice(_rates(sel), t, workload.days_per_month).items():
                point[k] += v
            for d in draws:
                res = _project_slice(_rates([rng.choice(sel) for _ in sel]), t, workload.days_per_month)
                for k, v in res.items():
                    d[k] += v
        samples[stack] = draws
        out["stacks"][stack] = {k: {"value": point[k], "ci95": _ci([d[k] for d in draws])} for k in keys}
    for stack in stacks:
        if stack == baseline:
            continue
        s, b, draws = out["stacks"][stack], out["stacks"][baseline], samples[stack]
        # tokens and cost: what the baseline would bill for this stack's text minus what this stack bills;
        # GPU-hours: the baseline stack's own decode rate on its traffic minus this stack's
        pairs = {"tokens": ("baseline_tokens", "tokens"), "cost": ("baseline_cost", "cost")}
        s["savings_vs_baseline"] = {
            k: {"value": s[bk]["value"] - s[k]["value"], "ci95": _ci([d[bk] - d[k] for d in draws])}
            for k, (bk, _) in pairs.items()
        }
        s["savings_vs_baseline"]["gpu_hours"] = {
            "value": b["gpu_hours"]["value"] - s["gpu_hours"]["value"],
            "ci95": _ci([bd["gpu_hours"] - sd["gpu_hours"] for bd, sd in zip(samples[baseline], draws, strict=True)]),
        }
    return out


def _ci(xs: list[float]) -> list[float]:
    xs = sorted(xs)
    if not xs:
        return [float("nan"), float("nan")]
    return [xs[int(0.025 * (len(xs) - 1))], xs[int(0.975 * (len(xs) - 1))]]


def write_example_workload(path: str | Path) -> None:
    """A documented example profile (also used by the demo)."""
    Path(path).write_text(
        "# tokenwise measure project --workload configs/workload.yaml --run runs/demo\n"
        "workload:\n  name: add-hindi-traffic\n  days_per_month: 30\n  traffic:\n"
        "    - {language: en, domain: docs, requests_per_day: 20000, input_bytes: 800, output_bytes: 400}\n"
        "    - {language: hi, domain: ui, requests_per_day: 5000, input_bytes: 600, output_bytes: 300}\n",
        encoding="utf-8",
    )
