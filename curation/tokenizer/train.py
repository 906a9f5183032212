"""Train byte-level BPE or Unigram tokenizers by streaming curated Parquet, sampled by a plan.

Reading never holds the corpus: one pass counts characters per language and domain in the training split (held-out
documents are skipped, see :mod:`tokenwise.splits`), the plan (or a temperature over those counts) turns them into a
per-language rate, and a second pass feeds ``tokenizers`` ``train_from_iterator`` batches of sampled texts. A rate
above 1 repeats documents (epochs), below 1 keeps each with that probability (seeded).

Output ``<run>/tokenizers/<name>/``: ``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json``
(``transformers.AutoTokenizer.from_pretrained(dir)`` and ``tokenizers.Tokenizer.from_file`` both load it) and
``meta.json`` (data manifest hash, plan, vocab size, chars sampled per language/domain, time, peak memory).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tokenizers import models

from curation.tokenizer.builders import build_tokenizer
from curation.tokenizer.config import (
    TokenizerSection,
    TokenizerTrainConfig,
    TokenizerTrainError,
    load_tokenizer_section,
)
from curation.tokenizer.data import is_dev, iter_rows, manifest_hash, scan, shard_paths
from curation.tokenizer.extend import extend
from curation.tokenizer.parallel import read_parallel
from curation.tokenizer.parity import train_parity_bpe
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------- planning


def load_plan(run_dir: str, plan: str) -> tuple[str, dict[str, Any]]:
    """Read a plan by name (``<run>/plans/<name>.json``) or path; returns (path, plan)."""
    path = Path(plan) if plan.endswith(".json") or os.sep in plan else Path(run_dir) / "plans" / f"{plan}.json"
    if not path.is_file():
        raise TokenizerTrainError(
            f"plan {plan!r}: no plan file at {path}; run the curation plan stage or fix the name"
        )
    data = read_json(path)
    if not isinstance(data.get("languages"), dict) or not data["languages"]:
        raise TokenizerTrainError(f"{path}: plan has no 'languages' mapping of locale -> {{weight, tokens, epochs}}")
    return str(path), data


def plan_weights(plan: dict[str, Any], path: str) -> dict[str, float]:
    """Per-language weights from a plan: its ``weight`` fields, else proportional to ``tokens``."""
    langs = plan["languages"]
    key = "weight" if all(isinstance(v, dict) and "weight" in v for v in langs.values()) else "tokens"
    try:
        w = {lang: float(v[key]) if isinstance(v, dict) else float(v) for lang, v in langs.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise TokenizerTrainError(f"{path}: every plan language needs a numeric 'weight' or 'tokens' ({e})") from e
    return _normalise({k: v for k, v in w.items() if v > 0}, path)


def temperature_weights(chars: dict[str, int], temperature: float) -> dict[str, float]:
    """Weights ∝ (share of characters)^(1/T): T=1 keeps the corpus mix, larger T flattens it toward uniform."""
    total = sum(chars.values())
    return _normalise({lang: (c / total) ** (1.0 / temperature) for lang, c in chars.items() if c > 0}, "temperature")


def _normalise(w: dict[str, float], where: str) -> dict[str, float]:
    s = sum(w.values())
    if s <= 0:
        raise TokenizerTrainError(f"{where}: all language weights are zero")
    return {k: v / s for k, v in w.items()}


def sampling_rates(cfg: TokenizerTrainConfig, stats: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Per-language weight, available chars, target chars and rate (epochs) for this config; errors on bad plans."""
    domains = set(cfg.domains) if cfg.domains else None
    avail = {
        lang: sum(c for d, c in per.items() if domains is None or d in domains) for lang, per in stats["chars"].items()
    }
    if cfg.languages:
        avail = {lang: c for lang, c in avail.items() if lang in cfg.languages}
    if not any(avail.values()):
        where = f" in domains {sorted(domains)}" if domains else ""
        raise TokenizerTrainError(f"{cfg.name}: empty corpus: no training documents{where}; check <run>/curated/")
    plan_path = None
    if cfg.plan:
        plan_path, plan = load_plan(run_dir, cfg.plan)
        weights = plan_weights(plan, plan_path)
        if cfg.languages:
            weights = _normalise({k: v for k, v in weights.items() if k in cfg.languages}, plan_path)
        missing = sorted(lang for lang in weights if not avail.get(lang))
        if missing and cfg.on_missing_language == "error":
            raise TokenizerTrainError(
                f"{plan_path}: plan languages {missing} have no training data in the corpus"
                f"{' for domains ' + str(sorted(domains)) if domains else ''}; drop them from the plan, add data, "
                "or set on_missing_language: skip"
            )
        if missing:
            log.warning("plan languages without training data skipped %s", kv(plan=plan_path, languages=missing))
            weights = _normalise({k: v for k, v in weights.items() if k not in missing}, plan_path)
    else:
        missing = []
        weights = temperature_weights(avail, cfg.temperature)
    langs = {}
    for lang, w in sorted(weights.items()):
        target = w * cfg.sample_chars
        langs[lang] = {
            "weight": round(w, 6),
            "available_chars": avail[lang],
            "target_chars": int(target),
            "rate": min(target / avail[lang], cfg.max_epochs),
        }
    temp = None if cfg.plan else cfg.temperature
    return {"plan_path": plan_path, "temperature": temp, "skipped_languages": missing, "languages": langs}


@dataclass
class SampleLog:
    """What the sampler emitted: characters per ``lang/domain``, documents cut at ``max_doc_chars`` (and the
    characters that cut removed, once per emitted copy), and parity dev documents left out of training."""

    chars: dict[str, int] = field(default_factory=dict)
    cut_documents: int = 0
    cut_chars: int = 0
    cut_by_lang: dict[str, int] = field(default_factory=dict)
    dev_documents: int = 0

    def summary(self, max_doc_chars: int) -> dict[str, Any]:
        """Totals for meta.json: und (code/docs without a language) share and the cut at ``max_doc_chars``."""
        total = sum(self.chars.values())
        und = sum(n for k, n in self.chars.items() if k.split("/", 1)[0] == "und")
        return {
            "sampled_chars_total": total,
            "und_chars": und,
            "und_share": round(und / total, 4) if total else 0.0,
            "cut": {
                "max_doc_chars": max_doc_chars,
                "documents": self.cut_documents,
                "chars_removed": self.cut_chars,
                "share_removed": round(self.cut_chars / (total + self.cut_chars), 4) if total else 0.0,
                "documents_by_lang": dict(sorted(self.cut_by_lang.items())),
            },
        }


def sample_docs(
    shards: list[str],
    cfg: TokenizerTrainConfig,
    rates: dict[str, float],
    slog: SampleLog,
    dev_fraction: float | None = None,
) -> Iterator[tuple[str, str]]:
    """Stream (text, language) of the training sample: each document repeated floor(rate) times, plus once more with
    p=frac(rate); documents longer than ``max_doc_chars`` are cut. With ``dev_fraction`` the parity dev units are
    left out. ``slog`` is filled as the consumer reads."""
    rng = np.random.default_rng(cfg.seed)
    for b in iter_rows(shards, heldout=False, columns=("id", "unit_id", "lang", "domain", "text")):
        u = rng.random(len(b["text"]))
        for doc_id, unit, lang, dom, text, ui in zip(
            b["id"], b["unit_id"], b["lang"], b["domain"], b["text"], u, strict=True
        ):
            lang = lang or "und"
            rate = rates.get(lang, 0.0)
            if rate <= 0 or (cfg.domains and dom not in cfg.domains):
                continue
            if dev_fraction and is_dev(doc_id, unit, dev_fraction):
                slog.dev_documents += 1
                continue
            n = int(rate) + int(ui < rate - int(rate))
            if not n:
                continue
            if len(text) > cfg.max_doc_chars:
                slog.cut_documents += 1
                slog.cut_chars += n * (len(text) - cfg.max_doc_chars)
                slog.cut_by_lang[lang] = slog.cut_by_lang.get(lang, 0) + 1
                text = text[: cfg.max_doc_chars]
            key = f"{lang}/{dom}"
            slog.chars[key] = slog.chars.get(key, 0) + n * len(text)
            for _ in range(n):
                yield text, lang


def sample_texts(
    shards: list[str], cfg: TokenizerTrainConfig, rates: dict[str, float], slog: SampleLog, batch: int = 512
) -> Iterator[list[str]]:
    """Batches of training texts from :func:`sample_docs` (what ``tokenizers`` trainers read)."""
    out: list[str] = []
    for text, _ in sample_docs(shards, cfg, rates, slog):
        out.append(text)
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def dev_units(cfg: TokenizerTrainConfig, shards: list[str], langs: set[str]) -> list[tuple[str, str, str]]:
    """(unit, language, text) of the parity dev set: training units in the dev share, or the configured JSONL."""
    cut = cfg.max_doc_chars
    if cfg.parity.dev != "split":
        data, stats = read_parallel(cfg.parity.dev)
        log.info("parity dev set %s", kv(path=cfg.parity.dev, units=stats["units"], quarantined=stats["quarantined"]))
        return [(u, lang, t[:cut]) for u, lang, t in zip(data.units, data.langs, data.texts, strict=True)]
    out = []
    for b in iter_rows(shards, heldout=False, columns=("id", "unit_id", "lang", "domain", "text")):
        for i, unit, lang, dom, text in zip(b["id"], b["unit_id"], b["lang"], b["domain"], b["text"], strict=True):
            if lang in langs and (not cfg.domains or dom in cfg.domains) and is_dev(i, unit, cfg.parity.dev_fraction):
                out.append((unit, lang, text[:cut]))
    return out


def train_parity(
    cfg: TokenizerTrainConfig, shards: list[str], rates: dict[str, float], slog: SampleLog
) -> tuple[Any, dict[str, Any]]:
    """Parity-aware BPE on the sampled texts (see :mod:`curation.tokenizer.parity`), as a ``tokenizers.Tokenizer``
    with the classic recipe's normalizer, pre-tokenizer and decoder; returns (tokenizer, training stats)."""
    tok, _ = build_tokenizer(cfg.model_copy(update={"model": "bpe"}))
    norm, pre = tok.normalizer, tok.pre_tokenizer

    def pre_tokenize(text: str) -> list[tuple[str, tuple[int, int]]]:
        return pre.pre_tokenize_str(norm.normalize_str(text) if norm else text)

    p = cfg.parity
    dev = dev_units(cfg, shards, {lang for lang, r in rates.items() if r > 0} | {"en"})
    docs = sample_docs(shards, cfg, rates, slog, p.dev_fraction if p.dev == "split" else None)
    res = train_parity_bpe(
        docs, dev, pre_tokenize, cfg.vocab_size, cfg.special_tokens, min_frequency=cfg.min_frequency,
        target_premium=p.target_premium, global_merges=p.global_merges, window=p.window, alpha=p.alpha,
    )  # fmt: skip
    tok.model = models.BPE(vocab=res.vocab, merges=res.merges, unk_token=cfg.unk_token)
    tok.add_special_tokens(cfg.special_tokens)
    return tok, res.stats


# --------------------------------------------------------------------------------------------------------- training


class PeakRSS:
    """Context manager sampling this process's RSS every 20 ms; ``peak_mb`` is the largest seen."""

    def __init__(self, interval: float = 0.02):

        self._proc, self._interval, self._stop = psutil.Process(), interval, threading.Event()
        self.start_mb = self.peak_mb = self._proc.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)


def save_tokenizer_dir(tok: Any, cfg_tokens: dict[str, str | None], out_dir: str, meta: dict[str, Any]) -> None:
    """Write tokenizer.json + HF config files + meta.json to a temp dir, then rename it onto ``out_dir``."""
    from transformers import PreTrainedTokenizerFast  # heavy: deferred until used

    out = Path(out_dir)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    for stale in [*out.parent.glob(f".tmp-{out.name}-*"), *out.parent.glob(f".old-{out.name}-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed run; never a published tokenizer
    try:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, clean_up_tokenization_spaces=False, **{k: v for k, v in cfg_tokens.items() if v}
        )
        fast.save_pretrained(str(tmp))
        write_json(tmp / "special_tokens_map.json", {k: v for k, v in cfg_tokens.items() if v})  # for older readers
        write_json(tmp / "meta.json", meta)
        old = out.parent / f".old-{out.name}-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_inputs(cfg: TokenizerTrainConfig, run_dir: str, source: str = "curated") -> dict[str, Any]:
    """Everything that can fail before training: corpus present, plan usable, vocab large enough."""
    shards = shard_paths(run_dir, source)
    if not shards:
        raise TokenizerTrainError(f"empty corpus: no shard-*.parquet under {Path(run_dir) / source}")
    stats = scan(shards, alphabet=cfg.pre_tokenization == "metaspace")
    rates = sampling_rates(cfg, stats, run_dir)
    if cfg.model == "parity_bpe" and cfg.parity.dev != "split" and not Path(cfg.parity.dev).is_file():
        raise TokenizerTrainError(
            f"{cfg.name}: parity.dev {cfg.parity.dev!r}: no such file; give a parallel JSONL path or 'split'"
        )
    need = cfg.min_vocab()
    if stats["alphabet"] is not None:
        need += min(stats["alphabet"], cfg.limit_alphabet)
    if cfg.vocab_size < need:
        raise TokenizerTrainError(
            f"{cfg.name}: vocab_size {cfg.vocab_size} is smaller than the alphabet plus special tokens ({need}); "
            f"raise vocab_size to at least {need}"
        )
    return {"shards": shards, "stats": stats, "rates": rates}


def train(cfg: TokenizerTrainConfig, run_dir: str, source: str = "curated") -> dict[str, Any]:
    """Train one tokenizer from the run's curated shards and save it under ``<run>/tokenizers/<name>/``.

    Returns the meta dict written to ``meta.json``.
    """
    t0 = time.perf_counter()
    checked = check_inputs(cfg, run_dir, source)
    shards, rates = checked["shards"], checked["rates"]
    slog = SampleLog()
    rate_of = {lang: v["rate"] for lang, v in rates["languages"].items()}
    parity = None
    t_train = time.perf_counter()
    with PeakRSS() as mem:
        if cfg.model == "parity_bpe":
            tok, parity = train_parity(cfg, shards, rate_of, slog)
        else:
            tok, trainer = build_tokenizer(cfg)
            # single strings, not lists: tokenizers trains measurably faster from a flat iterator of str
            texts = (t for batch in sample_texts(shards, cfg, rate_of, slog) for t in batch)
            tok.train_from_iterator(texts, trainer=trainer)
    train_s = time.perf_counter() - t_train
    if not slog.chars:
        raise TokenizerTrainError(f"{cfg.name}: the plan sampled no text; raise sample_chars or check the plan")
    n_chars = sum(slog.chars.values())
    meta = {
        "name": cfg.name,
        "spec": f"run:{cfg.name}",
        "config": cfg.model_dump(mode="json"),
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "manifest_hash": manifest_hash(shards),
        "shards": [Path(p).name for p in shards],
        "source": source,
        "plan": rates,
        "sampled_chars": dict(sorted(slog.chars.items())),
        **slog.summary(cfg.max_doc_chars),
        "train_seconds": round(train_s, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        "train_chars_per_s": round(n_chars / max(train_s, 1e-9)),
        "peak_rss_mb": round(mem.peak_mb, 1),
        "rss_before_mb": round(mem.start_mb, 1),
        "tokenizers_version": _version("tokenizers"),
    }
    if parity is not None:
        meta["parity"] = parity
    roles = {r: getattr(cfg, r) for r in ("bos_token", "eos_token", "pad_token", "unk_token")}
    save_tokenizer_dir(tok, roles, str(Path(run_dir) / "tokenizers" / cfg.name), meta)
    log.info(
        "trained %s",
        kv(
            name=cfg.name,
            vocab=meta["vocab_size"],
            chars=n_chars,
            und_share=meta["und_share"],
            cut_documents=meta["cut"]["documents"],
            cut_chars=meta["cut"]["chars_removed"],
            s=meta["train_seconds"],
            peak_rss_mb=meta["peak_rss_mb"],
        ),
    )
    return meta


def _version(pkg: str) -> str:

    return version(pkg)


# --------------------------------------------------------------------------------------------------------- stage


def train_all(section: TokenizerSection, run_dir: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Train (skipping up-to-date ones) then extend every configured tokenizer; returns one summary per tokenizer."""
    rd, out = RunDir(run_dir), []
    shards = shard_paths(run_dir, section.source)
    data_hash = manifest_hash(shards) if shards else "none"
    for cfg in section.train:
        if only and cfg.name not in only:
            continue
        h = hash_obj([cfg.model_dump(mode="json"), data_hash, _plan_hash(run_dir, cfg.plan), _dev_hash(cfg)])
        stage = f"tokenizers/{cfg.name}"
        if rd.is_done(stage, h):
            out.append({"name": cfg.name, "skipped": True, **(rd.marker(stage) or {}).get("summary", {})})
            continue
        meta = train(cfg, run_dir, section.source)
        summary = train_summary(meta)
        rd.mark_done(stage, h, summary)
        out.append(summary)
    for ecfg in section.extend:
        if only and ecfg.name not in only:
            continue
        base = rd.marker(f"tokenizers/{ecfg.base[4:]}") if ecfg.base.startswith("run:") else ecfg.base
        h = hash_obj([ecfg.model_dump(mode="json"), data_hash, base])
        stage = f"tokenizers/{ecfg.name}"
        if rd.is_done(stage, h):
            out.append({"name": ecfg.name, "skipped": True, **(rd.marker(stage) or {}).get("summary", {})})
            continue
        meta = extend(ecfg, run_dir, section.source)
        summary = {"name": ecfg.name, "vocab_size": meta["vocab_size"], "added": len(meta["added"])}
        rd.mark_done(stage, h, summary)
        out.append(summary)
    return out


def train_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The marker/CLI summary of one trained tokenizer: size, time, und share, the cut, parity's dev premium."""
    cut = meta.get("cut", {})
    out = {
        "name": meta["name"],
        "vocab_size": meta["vocab_size"],
        "train_seconds": meta["train_seconds"],
        "und_share": meta.get("und_share"),
        "cut_documents": cut.get("documents"),
        "cut_chars": cut.get("chars_removed"),
        "cut_share": cut.get("share_removed"),
    }
    prem = (meta.get("parity") or {}).get("dev_premium_vs_english")
    if prem:
        worst = max(prem, key=prem.get)
        out |= {"dev_premium_max": round(prem[worst], 4), "dev_premium_worst": worst}
    return out


def describe(d: dict[str, Any]) -> str:
    """One line: vocab, und (code/docs) share of the sample, documents cut at max_doc_chars, parity's dev premium."""
    parts = [f"vocab {d.get('vocab_size')}"]
    if d.get("und_share") is not None:
        parts.append(f"und (code/docs) {d['und_share']:.1%} of sampled chars")
    if d.get("cut_documents") is not None:
        cut = f"-{d['cut_chars']:,} chars, {d['cut_share']:.1%}"
        parts.append(f"{d['cut_documents']} docs cut at max_doc_chars ({cut})")
    if d.get("dev_premium_max") is not None:
        parts.append(f"dev premium max {d['dev_premium_max']:.2f} ({d['dev_premium_worst']})")
    return ", ".join(parts)


def _dev_hash(cfg: TokenizerTrainConfig) -> str | None:
    if cfg.model != "parity_bpe" or cfg.parity.dev == "split":
        return None
    return sha256_file(cfg.parity.dev) if Path(cfg.parity.dev).is_file() else "missing"


def _plan_hash(run_dir: str, plan: str | None) -> str | None:
    if not plan:
        return None
    try:
        return sha256_file(load_plan(run_dir, plan)[0])
    except TokenizerTrainError:
        return "missing"


def run_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``tokenizer_train``: train and extend every tokenizer in the config; one-line summary."""
    section = load_tokenizer_section(config_path)
    done = train_all(section, run_dir)
    parts = []
    for d in done:
        extra = f", und {d['und_share']:.0%}, {d['cut_documents']} cut" if d.get("und_share") is not None else ""
        prem = f", dev premium {d['dev_premium_max']:.2f}" if d.get("dev_premium_max") is not None else ""
        parts.append(f"{d['name']}({d.get('vocab_size', '?')}{extra}{prem}{', cached' if d.get('skipped') else ''})")
    return f"tokenizers: {', '.join(parts) or 'none configured'} -> {Path(run_dir) / 'tokenizers'}"
