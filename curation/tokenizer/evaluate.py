"""Measure tokenizers per language and domain on the held-out split, against reference tokenizers.

Every tokenizer encodes the same held-out documents (``tokenwise.splits.is_heldout``). Per language (FLORES key, e.g.
``hin_Deva``) and per language × domain the metrics are: tokens, fertility (tokens per whitespace word), bytes and
characters per token, normalized sequence length (tokens / reference tokens), tokens saved vs every reference (same
bytes of the same documents), premium vs English on parallel units (tokens for a unit in the language / tokens for the
same unit in English), Rényi efficiency of the token distribution (Zouhar et al. 2023: H_α(p) / log|V|), unknown or
byte-fallback rate, and round-trip exactness with failing examples. Each metric carries ``n`` (documents or units)
and a bootstrap 95% interval over them. A (tokenizer, language) pair with unknown rate above ``invalid_unk_rate`` is
flagged ``valid: false`` and left out of the summary (max premium, fairness Gini) rather than averaged in.

Output: ``<run>/tokenizers/eval.json`` (``{reference, results: {name: {tokenizer, vocab_size, languages: {key:
{language_info, metrics, domains}}, summary, throughput}}}``), ``premium_vs_eng_Latn.csv`` (language × tokenizer),
``savings.csv`` (tokenizer × reference × language × domain) and ``eval.json`` inside each run tokenizer's directory.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.languages import ENGLISH_KEY, is_english, language_info, unique_keys
from curation.tokenizer.config import OPS, TokenizerEvalConfig, TokenizerEvalError, load_tokenizer_section, parse_gate
from curation.tokenizer.data import HeldOut, iter_rows, manifest_hash, shard_paths
from curation.tokenizer.parallel import read_parallel
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, write_json
from tokenwise.splits import split_position
from tokenwise.tokenizer_specs import TokenizerSpecError, load_tokenizer

log = logging.getLogger(__name__)

NOTES = {
    "fertility": "tokens per whitespace-separated word; scripts written without spaces (zho, jpn, tha, mya) have "
    "few 'words', so compare their fertility only across tokenizers, not across languages",
    "premium_vs_eng_Latn": "tokens for the held-out units in this language / tokens for the same units in English",
    "nsl": "tokens / reference tokens on the same documents (normalized sequence length)",
    "tokens_saved_vs_X": "1 - tokens / X's tokens on the same held-out documents (same bytes)",
    "renyi_efficiency": "H_alpha(p) / log|V| of the unigram token distribution (Zouhar et al. 2023)",
    "unk_rate": "unknown or <0xNN> byte-fallback tokens / tokens; above invalid_unk_rate the pair is invalid",
    "english_parallel_cost_vs_X": "tokens / X's tokens on held-out English documents that have a translation",
    "ci95": "bootstrap percentile interval over documents (over units for premium)",
}



# --------------------------------------------------------------------------------------------------------- data


def load_heldout(shards: list[str], cfg: TokenizerEvalConfig) -> HeldOut:
    """Held-out documents of the configured languages/domains, sampled by unit.

    Per (language, domain) the first ``max_docs_per_group`` documents in split-hash order are kept (the order is the
    same in every language, so the samples share units), plus every English document whose unit a kept translation
    has: a language with few held-out units keeps all of them and their English side, whatever the cap.
    """
    if not shards:
        raise TokenizerEvalError("empty corpus: no shard-*.parquet to evaluate on")
    groups: dict[tuple[str, str], list[tuple[float, str, str | None]]] = {}
    for b in iter_rows(shards, heldout=True, columns=("id", "unit_id", "lang", "domain")):
        for i, u, lang, dom in zip(b["id"], b["unit_id"], b["lang"], b["domain"], strict=True):
            lang, dom = lang or "und", dom or "none"
            if (cfg.languages and lang not in cfg.languages and lang != "en") or (
                cfg.domains and dom not in cfg.domains
            ):
                continue
            groups.setdefault((lang, dom), []).append((split_position(i, u), i, u))
    keep, units = set(), set()
    for (lang, _), rows in groups.items():
        rows.sort()
        for _, i, u in rows[: cfg.max_docs_per_group]:
            keep.add(i)
            if u and not is_english(lang):
                units.add(u)
    for (lang, _), rows in groups.items():
        if is_english(lang):
            keep.update(i for _, i, u in rows if u in units)
    data = HeldOut()
    for b in iter_rows(shards, heldout=True):
        for i, u, lang, dom, text in zip(b["id"], b["unit_id"], b["lang"], b["domain"], b["text"], strict=True):
            if i in keep and text:
                data.add(i, u, lang or "und", dom or "none", text)
    if not len(data):
        raise TokenizerEvalError(
            f"no held-out documents in {len(shards)} shard(s) for the configured languages/domains"
        )
    capped = {f"{k[0]}/{k[1]}": len(v) for k, v in groups.items() if len(v) > cfg.max_docs_per_group}
    if capped:
        log.info("held-out groups sampled by unit %s", kv(cap=cfg.max_docs_per_group, available=capped))
    return data


@dataclass
class Encoded:
    """One tokenizer's encoding of the held-out set: per-document counts plus the concatenated ids."""

    name: str
    vocab_size: int
    tokens: np.ndarray
    unk: np.ndarray
    ids: np.ndarray
    offsets: np.ndarray
    roundtrip_fail: np.ndarray
    examples: list[dict[str, Any]]


def encode_all(tok: Any, data: HeldOut, n_examples: int = 3) -> Encoded:
    """Encode every held-out document once; count unknown ids and check decode(encode(x)) == x."""
    unknown = np.array(sorted(tok.unknown_ids()), dtype=np.int64)
    all_ids = tok.encode_batch(data.texts)
    lens = np.array([len(x) for x in all_ids], dtype=np.int64)
    flat = np.fromiter((i for ids in all_ids for i in ids), dtype=np.int64, count=int(lens.sum()))
    offsets = np.concatenate([[0], np.cumsum(lens)])
    is_unk = np.isin(flat, unknown) if len(unknown) else np.zeros(len(flat), bool)
    unk = np.add.reduceat(is_unk.astype(np.int64), offsets[:-1]) if len(flat) else np.zeros(len(lens), np.int64)
    unk[lens == 0] = 0
    fails, examples = np.zeros(len(lens), bool), []
    for i, ids in enumerate(all_ids):
        back = tok.decode(ids)
        if back != data.texts[i]:
            fails[i] = True
            if len(examples) < n_examples:
                examples.append(_diff_example(data.ids[i], data.texts[i], back))
    return Encoded(tok.name, tok.vocab_size, lens, unk, flat, offsets, fails, examples)


def _diff_example(doc_id: str, text: str, back: str) -> dict[str, Any]:
    at = next((k for k, (a, b) in enumerate(zip(text, back, strict=False)) if a != b), min(len(text), len(back)))
    return {
        "id": doc_id,
        "at": at,
        "expected": text[max(0, at - 20) : at + 20],
        "got": back[max(0, at - 20) : at + 20],
    }


# --------------------------------------------------------------------------------------------------------- metrics


def renyi_efficiency(counts: np.ndarray, vocab_size: int, alpha: float) -> float:
    """Rényi efficiency H_α(p) / log|V| of a token frequency vector (Zouhar et al. 2023, eq. 5)."""
    total = counts.sum()
    if total <= 0 or vocab_size < 2:
        return float("nan")
    p = counts[counts > 0] / total
    h = math.log(float(np.sum(p**alpha))) / (1.0 - alpha)
    return h / math.log(vocab_size)


def gini(values: list[float]) -> float:
    """Gini coefficient: mean absolute difference over all pairs / (2 × mean); 0 = every language costs the same."""
    x = np.asarray([v for v in values if v == v], dtype=float)
    if len(x) < 2 or x.mean() == 0:
        return 0.0
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def _ratio_metric(num: np.ndarray, den: np.ndarray, weights: np.ndarray | None) -> dict[str, Any]:
    """sum(num)/sum(den) with a bootstrap interval from resampling the units (rows of ``weights``)."""
    d = den.sum()
    value = float(num.sum() / d) if d else float("nan")
    out = {"value": value, "n": int(len(num))}
    if weights is not None and len(num) > 1 and d:
        bn, bd = weights @ num, weights @ den
        ok = bd > 0
        lo, hi = np.percentile(bn[ok] / bd[ok], [2.5, 97.5]) if ok.any() else (float("nan"),) * 2
        out["ci95"] = [float(lo), float(hi)]
    else:
        out["ci95"] = [value, value]
    return out


def _sum_metric(x: np.ndarray, weights: np.ndarray | None) -> dict[str, Any]:
    out = {"value": int(x.sum()), "n": int(len(x))}
    if weights is not None and len(x) > 1:
        lo, hi = np.percentile(weights @ x, [2.5, 97.5])
        out["ci95"] = [float(lo), float(hi)]
    else:
        out["ci95"] = [out["value"], out["value"]]
    return out


def _boot_weights(n: int, b: int, rng: np.random.Generator) -> np.ndarray | None:
    # [B, n]: how many times each unit is drawn in each bootstrap resample
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(float) if n > 1 else None


def _renyi_metric(enc: Encoded, idx: np.ndarray, alpha: float, weights: np.ndarray | None) -> dict[str, Any]:
    spans = [enc.ids[enc.offsets[i] : enc.offsets[i + 1]] for i in idx]
    flat = np.concatenate(spans) if spans else np.zeros(0, np.int64)
    uniq, inv = np.unique(flat, return_inverse=True)
    value = renyi_efficiency(np.bincount(inv, minlength=len(uniq)).astype(float), enc.vocab_size, alpha)
    out = {"value": value, "n": int(len(idx)), "ci95": [value, value]}
    if weights is not None and len(flat):
        doc_of_tok = np.repeat(np.arange(len(idx)), [len(s) for s in spans])
        boots = [
            renyi_efficiency(np.bincount(inv, weights=w[doc_of_tok], minlength=len(uniq)), enc.vocab_size, alpha)
            for w in weights[: min(len(weights), 100)]  # 100 resamples: Rényi is costlier than a ratio of sums
        ]
        out["ci95"] = [float(np.nanpercentile(boots, 2.5)), float(np.nanpercentile(boots, 97.5))]
    return out


def group_metrics(
    enc: Encoded,
    refs: dict[str, Encoded],
    nsl_ref: str,
    sizes: dict[str, np.ndarray],
    idx: np.ndarray,
    cfg: TokenizerEvalConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Every per-document metric for the documents ``idx`` of one tokenizer (references for NSL and savings)."""
    w = _boot_weights(len(idx), cfg.bootstrap, rng)
    tok = enc.tokens[idx].astype(float)
    m: dict[str, Any] = {
        "documents": int(len(idx)),
        "tokens": _sum_metric(enc.tokens[idx], w),
        "fertility": _ratio_metric(tok, sizes["words"][idx], w),
        "bytes_per_token": _ratio_metric(sizes["bytes"][idx], tok, w),
        "chars_per_token": _ratio_metric(sizes["chars"][idx], tok, w),
        "unk_rate": _ratio_metric(enc.unk[idx].astype(float), tok, w),
        "renyi_efficiency": _renyi_metric(enc, idx, cfg.alpha, w),
        "roundtrip_failures": {"value": int(enc.roundtrip_fail[idx].sum()), "n": int(len(idx))},
    }
    if nsl_ref in refs:
        m["nsl"] = _ratio_metric(tok, refs[nsl_ref].tokens[idx].astype(float), w) | {"reference": nsl_ref}
    for name, ref in refs.items():
        if name != enc.name:
            r = _ratio_metric(ref.tokens[idx].astype(float) - tok, ref.tokens[idx].astype(float), w)
            m[f"tokens_saved_vs_{name}"] = r
    m["valid"] = bool(m["unk_rate"]["value"] <= cfg.invalid_unk_rate)
    return m


def premium_metric(
    enc: Encoded, data: HeldOut, lang_idx: np.ndarray, en_by_unit: dict[str, int], b: int, rng: np.random.Generator
) -> dict[str, Any] | None:
    """Tokens in this language / tokens for the same units in English (parallel units only)."""
    pairs = [(i, en_by_unit[data.units[i]]) for i in lang_idx if data.units[i] in en_by_unit]
    if not pairs:
        return None
    a = np.array(pairs)
    num, den = enc.tokens[a[:, 0]].astype(float), enc.tokens[a[:, 1]].astype(float)
    return _ratio_metric(num, den, _boot_weights(len(a), b, rng))


# --------------------------------------------------------------------------------------------------------- evaluation


def evaluate_one(
    enc: Encoded, refs: dict[str, Encoded], data: HeldOut, keys: dict[str, str], cfg: TokenizerEvalConfig, nsl_ref: str
) -> dict[str, Any]:
    """The nested result of one tokenizer: ``{tokenizer, vocab_size, languages: {key: ...}, summary}``."""
    rng = np.random.default_rng(cfg.seed)
    sizes = _sizes(data)
    langs, doms = np.array(data.langs), np.array(data.domains)
    en_by_unit = {
        u: i for i, (u, lang) in enumerate(zip(data.units, data.langs, strict=True)) if u and is_english(lang)
    }
    languages: dict[str, Any] = {}
    for loc in sorted(set(data.langs)):
        idx = np.flatnonzero(langs == loc)
        sample = data.texts[idx[0]]
        entry = {
            "language_info": language_info(loc, sample) | {"key": keys[loc]},
            "metrics": group_metrics(enc, refs, nsl_ref, sizes, idx, cfg, rng),
            "domains": {},
        }
        prem = premium_metric(enc, data, idx, en_by_unit, cfg.bootstrap, rng)
        if prem:
            prem["few_units"] = prem["n"] < cfg.min_units and not is_english(loc)
            entry["metrics"]["premium_vs_eng_Latn"] = prem
        for dom in sorted(set(doms[idx])):
            didx = idx[doms[idx] == dom]
            entry["domains"][dom] = group_metrics(enc, refs, nsl_ref, sizes, didx, cfg, rng)
            dprem = premium_metric(enc, data, didx, en_by_unit, cfg.bootstrap, rng)
            if dprem:
                entry["domains"][dom]["premium_vs_eng_Latn"] = dprem
        languages[keys[loc]] = entry
    fails = int(enc.roundtrip_fail.sum())
    result = {
        "tokenizer": enc.name,
        "vocab_size": enc.vocab_size,
        "languages": languages,
        "roundtrip": {"failures": fails, "documents": len(data), "examples": enc.examples},
    }
    result["summary"] = summarize(result, refs, data, enc)
    return result


def _sizes(data: HeldOut) -> dict[str, np.ndarray]:
    return {
        "bytes": np.array([len(t.encode("utf-8")) for t in data.texts], dtype=float),
        "chars": np.array([len(t) for t in data.texts], dtype=float),
        "words": np.array([max(1, len(t.split())) for t in data.texts], dtype=float),
    }


def summarize(result: dict[str, Any], refs: dict[str, Encoded], data: HeldOut, enc: Encoded) -> dict[str, Any]:
    """Flat numbers a gate can test: premium max/mean, fairness Gini, unk rate, savings overall and per domain."""
    valid = {k: v for k, v in result["languages"].items() if v["metrics"]["valid"]}
    prem = {
        k: v["metrics"]["premium_vs_eng_Latn"]["value"]
        for k, v in valid.items()
        if "premium_vs_eng_Latn" in v["metrics"]
    }
    non_en = {k: p for k, p in prem.items() if k != ENGLISH_KEY}
    worst = max(non_en, key=non_en.get) if non_en else None
    langs = result["languages"]
    s: dict[str, Any] = {
        "languages": len(langs),
        "invalid_pairs": sorted(k for k, v in langs.items() if not v["metrics"]["valid"]),
        "premium_max": non_en[worst] if worst else None,
        "premium_worst_language": worst,
        "premium_worst_units": langs[worst]["metrics"]["premium_vs_eng_Latn"]["n"] if worst else None,
        "premium_max_ci95": langs[worst]["metrics"]["premium_vs_eng_Latn"]["ci95"] if worst else None,
        "premium_mean": float(np.mean(list(non_en.values()))) if non_en else None,
        "premium_languages": len(non_en),
        "premium_few_units": {
            k: v["metrics"]["premium_vs_eng_Latn"]["n"]
            for k, v in valid.items()
            if v["metrics"].get("premium_vs_eng_Latn", {}).get("few_units")
        },
        "premium_unmeasured": {
            k: ("invalid_unk_rate" if not v["metrics"]["valid"] else "no_parallel_english_units")
            for k, v in langs.items()
            if k != ENGLISH_KEY and k not in non_en and not (k.startswith("und_") or k == "und")
        },
        "fairness_gini": gini(list(prem.values())) if prem else None,
        "unk_rate_max": max(v["metrics"]["unk_rate"]["value"] for v in result["languages"].values()),
        "roundtrip_failures": result["roundtrip"]["failures"],
        "tokens": int(enc.tokens.sum()),
    }
    doms = np.array(data.domains)
    en = np.array([is_english(x) for x in data.langs])
    shared = Counter(u for u in data.units if u)
    en_par = en & np.array([bool(u) and shared[u] > 1 for u in data.units])  # English side of parallel units
    for name, ref in refs.items():
        if name == enc.name:
            continue
        s[f"tokens_saved_vs_{name}"] = float(1 - enc.tokens.sum() / max(1, ref.tokens.sum()))
        for dom in sorted(set(data.domains)):
            m = doms == dom
            s[f"tokens_saved_vs_{name}_{dom}"] = float(1 - enc.tokens[m].sum() / max(1, ref.tokens[m].sum()))
        if en.any():
            s[f"english_cost_vs_{name}"] = float(enc.tokens[en].sum() / max(1, ref.tokens[en].sum()))
            for dom in sorted(set(doms[en])):
                m = en & (doms == dom)
                s[f"english_cost_vs_{name}_{dom}"] = float(enc.tokens[m].sum() / max(1, ref.tokens[m].sum()))
        if en_par.any():
            s[f"english_parallel_cost_vs_{name}"] = float(enc.tokens[en_par].sum() / max(1, ref.tokens[en_par].sum()))
    return s


def throughput(tok: Any, texts: list[str], max_chars: int) -> dict[str, float]:
    """Encode MB/s (UTF-8 bytes) for one batch call and for one call per document, on the same texts."""
    sample, n = [], 0
    for t in texts:
        if n >= max_chars:
            break
        sample.append(t)
        n += len(t)
    mb = sum(len(t.encode("utf-8")) for t in sample) / 1e6
    t0 = time.perf_counter()
    tok.encode_batch(sample)
    t1 = time.perf_counter()
    for t in sample:
        tok.encode(t)
    t2 = time.perf_counter()
    return {
        "mb": round(mb, 3),
        "batch_mb_s": round(mb / max(t1 - t0, 1e-9), 2),
        "single_mb_s": round(mb / max(t2 - t1, 1e-9), 2),
        "documents": len(sample),
    }


def load_all(cfg: TokenizerEvalConfig, run_dir: str, skipped: list[str] | None = None) -> dict[str, Any]:
    """Load every candidate and reference before any work (a bad path fails here, naming it).

    A tiktoken reference whose encoding is not installed offline (e.g. o200k without its data file) is skipped with a
    warning and listed in ``skipped``; candidates, the NSL reference and hf:/run: paths must load.
    """
    specs = list(dict.fromkeys(cfg.tokenizers + [cfg.reference] + cfg.references))
    toks = {}
    for spec in specs:
        try:
            toks[spec] = load_tokenizer(spec, run_dir)
        except TokenizerSpecError as e:
            optional = spec.startswith("tiktoken:") and spec in cfg.references and spec != cfg.reference
            if not optional or skipped is None:
                raise
            log.warning("skipping reference %s", kv(spec=spec, reason=str(e)))
            skipped.append(spec)
    names = [t.name for t in toks.values()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TokenizerEvalError(f"tokenizer specs {specs} give the same short name(s) {dup}; rename a directory")
    return toks


def evaluate(
    cfg: TokenizerEvalConfig, run_dir: str, source: str = "curated", parallel: str | None = None
) -> dict[str, Any]:
    """Evaluate every configured tokenizer on the held-out split, or on every unit of an external ``parallel`` JSONL;
    write eval.json (``eval_<file stem>.json`` for a parallel set) + CSVs; return the report."""
    if not cfg.tokenizers and not cfg.references:
        raise TokenizerEvalError("tokenizer.eval: no tokenizers or references to evaluate")
    skipped: list[str] = []
    toks = load_all(cfg, run_dir, skipped)
    pstats = None
    if parallel:
        data, pstats = read_parallel(parallel)
    else:
        data = load_heldout(shard_paths(run_dir, source), cfg)
    keys = unique_keys(data.langs)
    encs = {spec: encode_all(t, data, cfg.examples) for spec, t in toks.items()}
    refs = {encs[s].name: encs[s] for s in dict.fromkeys(cfg.references + [cfg.reference]) if s in encs}
    nsl_ref = encs[cfg.reference].name
    results = {}
    for spec, enc in encs.items():
        res = evaluate_one(enc, refs, data, keys, cfg, nsl_ref)
        res["spec"], res["role"] = spec, "candidate" if spec in cfg.tokenizers else "reference"
        res["throughput"] = throughput(toks[spec], data.texts, cfg.throughput_chars)
        res["summary"]["throughput_batch_mb_s"] = res["throughput"]["batch_mb_s"]
        res["summary"]["throughput_single_mb_s"] = res["throughput"]["single_mb_s"]
        results[enc.name] = res
        log.info(
            "evaluated %s",
            kv(
                tokenizer=enc.name,
                premium_max=res["summary"]["premium_max"],
                roundtrip_failures=res["summary"]["roundtrip_failures"],
            ),
        )
    _warn_few_units(results, cfg.min_units)
    report = {
        "reference": nsl_ref,
        "dataset": "parallel" if parallel else "heldout",
        "heldout_documents": len(data),
        "units": len({u for u in data.units if u}),
        "parallel": pstats and pstats | {"quarantine": pstats["quarantine"][:100]},
        "skipped_references": skipped,
        "notes": NOTES,
        "config": cfg.model_dump(mode="json"),
        "results": results,
    }
    if parallel:
        write_outputs(report, run_dir, parallel_name(parallel), pstats["quarantine"])
    else:
        write_outputs(report, run_dir)
    return report


def parallel_name(path: str) -> str:
    """Output stem for an external parallel set: ``eval_<file stem>`` (characters outside [A-Za-z0-9_.-] -> _)."""
    stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in Path(path).name.split(".")[0]) or "parallel"
    return f"eval_{stem}"


def _warn_few_units(results: dict[str, Any], min_units: int) -> None:
    few: dict[str, int] = {}
    for res in results.values():
        for key, lang in res["languages"].items():
            p = lang["metrics"].get("premium_vs_eng_Latn")
            if p and p["few_units"]:
                few[key] = p["n"]
    if few:
        log.warning(
            "languages with few parallel units: kept, with wide intervals %s", kv(min_units=min_units, units=few)
        )


# --------------------------------------------------------------------------------------------------------- outputs


def premium_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{language, <tokenizer>: premium...}`` of the wide premium CSV (blank where no parallel units)."""
    names = list(report["results"])
    keys = sorted({k for r in report["results"].values() for k in r["languages"]})
    rows = []
    for key in keys:
        row: dict[str, Any] = {"language": key}
        for n in names:
            m = report["results"][n]["languages"].get(key, {}).get("metrics", {})
            p = m.get("premium_vs_eng_Latn")
            row[n] = "" if p is None else (round(p["value"], 4) if m.get("valid", True) else "invalid")
        rows.append(row)
    return rows


def savings_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{tokenizer, reference, language, domain, tokens, reference_tokens, saved, ci_low, ci_high, n}``."""
    rows = []
    for name, res in report["results"].items():
        for key, lang in res["languages"].items():
            for dom, m in lang["domains"].items():
                for metric, v in m.items():
                    if metric.startswith("tokens_saved_vs_"):
                        ref = metric.removeprefix("tokens_saved_vs_")
                        ref_tokens = report["results"][ref]["languages"][key]["domains"][dom]["tokens"]["value"]
                        rows.append(
                            {
                                "tokenizer": name,
                                "reference": ref,
                                "language": key,
                                "domain": dom,
                                "tokens": m["tokens"]["value"],
                                "reference_tokens": ref_tokens,
                                "saved": round(v["value"], 4),
                                "ci_low": round(v["ci95"][0], 4),
                                "ci_high": round(v["ci95"][1], 4),
                                "n": v["n"],
                                "valid": m["valid"],
                            }
                        )
    return rows


def _write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())


def write_outputs(
    report: dict[str, Any], run_dir: str, name: str | None = None, quarantine: list[dict] | None = None
) -> None:
    """eval.json + premium/savings CSVs under <run>/tokenizers/, and each run tokenizer's own eval.json; for an
    external parallel set ``<name>.json``, ``<name>_premium_vs_eng_Latn.csv``, ``<name>_savings.csv`` and the
    quarantined rows in ``quarantine/<name>.jsonl``."""
    rd = RunDir(run_dir)
    if name:
        write_json(rd.stage("tokenizers", f"{name}.json"), report)
        _write_csv(rd.stage("tokenizers", f"{name}_premium_vs_eng_Latn.csv"), premium_table(report))
        _write_csv(rd.stage("tokenizers", f"{name}_savings.csv"), savings_table(report))
        if quarantine:
            with atomic_open(rd.stage("tokenizers", "quarantine", f"{name}.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine)
        return
    write_json(rd.stage("tokenizers", "eval.json"), report)
    _write_csv(rd.stage("tokenizers", "premium_vs_eng_Latn.csv"), premium_table(report))
    _write_csv(rd.stage("tokenizers", "savings.csv"), savings_table(report))
    for res in report["results"].values():
        if res["spec"].startswith("run:"):
            write_json(rd.stage("tokenizers", res["spec"][4:], "eval.json"), {"reference": report["reference"], **res})


# --------------------------------------------------------------------------------------------------------- gates


def check_gates(report: dict[str, Any], gates: list[str]) -> list[str]:
    """Failing gates as messages naming tokenizer, metric, value and threshold (empty list = all pass).

    A gate without a tokenizer applies to every candidate; a metric missing from a summary is an error.
    """
    failures = []
    candidates = [n for n, r in report["results"].items() if r.get("role") == "candidate"] or list(report["results"])
    for gate in gates:
        tok, metric, op, value = parse_gate(gate)
        names = [tok] if tok else candidates
        for name in names:
            if name not in report["results"]:
                raise TokenizerEvalError(f"gate {gate!r}: no tokenizer {name!r}; evaluated: {list(report['results'])}")
            summary = report["results"][name]["summary"]
            if metric not in summary:
                raise TokenizerEvalError(f"gate {gate!r}: unknown metric {metric!r}; available: {sorted(summary)}")
            got = summary[metric]
            if got is not None and OPS[op](got, value):
                failures.append(f"{name}: {metric}={got:.4g} fails gate {metric}{op}{value:g}")
    return failures


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``tokenizer_eval``: evaluate the configured tokenizers and references; one-line summary."""
    section = load_tokenizer_section(config_path)
    cfg, rd = section.eval, RunDir(run_dir)
    tok_hashes = [rd.marker(f"tokenizers/{s[4:]}") for s in cfg.tokenizers if s.startswith("run:")]
    h = hash_obj([cfg.model_dump(mode="json"), manifest_hash(shard_paths(run_dir, section.source)), tok_hashes])
    if rd.is_done("tokenizers/_eval", h):
        return f"eval cached -> {rd.path('tokenizers', 'eval.json')}"
    report = evaluate(cfg, run_dir, section.source)
    rd.mark_done("tokenizers/_eval", h)
    parts = []
    for name, res in report["results"].items():
        s = res["summary"]
        pm = f"{s['premium_max']:.2f}" if s["premium_max"] is not None else "-"
        saved = s.get(f"tokens_saved_vs_{report['reference']}")
        parts.append(f"{name}: premium_max={pm}" + (f" saved_vs_{report['reference']}={saved:+.1%}" if saved else ""))
    return f"{'; '.join(parts)} -> {rd.path('tokenizers', 'eval.json')}"
