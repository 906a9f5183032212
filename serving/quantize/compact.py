"""Vocabulary trimming: a compact model whose embedding and LM head hold only the tokens the curated corpus uses.

The LM head of a small model with a big vocabulary is most of its per-token compute (Gemma 3 270M: 262,144 rows x
640 = 168M of its 268M parameters). :func:`count_tokens` counts the tokenizer's ids on the training split of the
curated documents (the served languages and domains), :func:`select_vocab` keeps the fewest most frequent ones
whose coverage of a further slice of the training split (not counted) meets the goal, plus special and byte tokens (so
every text stays representable) and the single-character tokens of the served scripts; :func:`compact_model` slices the
embedding (and an untied head) to those rows and saves a plain HF dir in local ids with ``kept_vocab.json``.
Serving loads it through :func:`to_global`: inputs are mapped global -> local, the head's logits are scattered back
into the full vocabulary (tokens outside the set get a floor logit: probability 0), so the engine, the API and HF's
``generate`` see an ordinary model. Text with an out-of-set token is respelled with kept tokens
(:meth:`tokenwise.vocab.KeptVocab.respell`); the report gives held-out coverage, size, tokens/s, bits per byte and
greedy agreement with the untrimmed model, fp32 and int8 side by side.
"""

from __future__ import annotations

import glob
import logging
import shutil
import statistics
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from serving.decode.generate import Stream, target_stream
from serving.measure.requests import build_requests
from serving.quantize.config import CompactConfig
from serving.quantize.methods import QUANTIZERS, heldout_loss, quantize_model, weight_bytes
from tokenwise.config import load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, read_json, sha256_file, write_json
from tokenwise.splits import HELDOUT_FRACTION, split_position
from tokenwise.vocab import KeptVocab, LocalTokenizer, byte_token_ids, select_kept, special_ids

log = logging.getLogger(__name__)

FLOOR_LOGIT = -1e9  # out-of-set tokens: exp() underflows to exactly 0 at any temperature, entropy terms stay finite


def _run_path(spec: str, run_dir: str, kind: str) -> Path:
    if spec.startswith("run:"):
        name = spec[4:]
        return Path(run_dir) / name if name == kind else Path(run_dir) / kind / name
    return Path(spec)


# ---- counting and selection ------------------------------------------------------------------------------------


PARTS = ("count", "select", "heldout")


def split_part(doc_id: str, unit_id: str | None, select_share: float) -> str:
    """``heldout`` (the project's held-out split), ``select`` (the next ``select_share`` of units: chooses the row
    count) or ``count`` (the training documents counted)."""
    pos = split_position(doc_id, unit_id)
    if pos < HELDOUT_FRACTION:
        return "heldout"
    return "select" if pos < HELDOUT_FRACTION + select_share else "count"


def iter_split(curated: Path, part: str, langs: list[str] | None, domains: list[str] | None,
               limit: int | None = None, select_share: float = 0.0) -> Iterator[str]:  # fmt: skip
    """Texts of one part of the curated shards (see :func:`split_part`), filtered to the served languages and
    domains."""
    if part not in PARTS:
        raise ValueError(f"unknown split part {part!r}; expected one of {PARTS}")
    shards = sorted(glob.glob(str(curated / "shard-*.parquet")))
    if not shards:
        raise FileNotFoundError(f"{curated}: no shard-*.parquet; run `tokenwise curate decide` first")
    n = 0
    for shard in shards:
        for row in pq.read_table(shard, columns=["id", "text", "lang", "domain", "unit_id"]).to_pylist():
            if (langs and row["lang"] not in langs) or (domains and row["domain"] not in domains):
                continue
            if split_part(row["id"], row["unit_id"], select_share) != part or not row["text"]:
                continue
            yield row["text"]
            n += 1
            if limit and n >= limit:
                return


def count_tokens(tokenizer: Any, texts: Iterator[str], batch: int = 512) -> Counter[int]:
    """Token id counts of ``texts`` under the tokenizer (batched through its Rust backend)."""
    counts: Counter[int] = Counter()
    backend = tokenizer.backend_tokenizer
    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) == batch:
            for enc in backend.encode_batch(buf, add_special_tokens=False):
                counts.update(enc.ids)
            buf = []
    for enc in backend.encode_batch(buf, add_special_tokens=False):
        counts.update(enc.ids)
    return counts


def coverage(counts: Counter[int], kept: KeptVocab) -> float:
    """Share of counted tokens that are in the kept set."""
    total = sum(counts.values())
    return sum(n for g, n in counts.items() if g in kept) / total if total else float("nan")


def script_of(ch: str) -> str | None:
    """The script of a letter or mark (first word of its Unicode name: LATIN, CYRILLIC, CJK, HANGUL, DEVANAGARI ...);
    None for digits, punctuation, symbols and unnamed code points."""
    if unicodedata.category(ch)[0] not in "LM":
        return None
    name = unicodedata.name(ch, "")
    return name.split()[0] if name else None


def served_scripts(counts: Counter[int], tokenizer: Any, min_share: float) -> dict[str, float]:
    """Scripts of the counted text (each token's letters weighted by its count) with at least ``min_share`` of the
    letters, and their shares."""
    letters: Counter[str] = Counter()
    ids = list(counts)
    for gid, piece in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True):
        for ch in piece or "":
            script = script_of(ch)
            if script:
                letters[script] += counts[gid]
    total = sum(letters.values())
    return {sc: n / total for sc, n in letters.most_common() if total and n / total >= min_share}


def script_char_ids(tokenizer: Any, scripts: Iterable[str]) -> list[int]:
    """Ids of the single-character letter tokens (also with SentencePiece's leading word mark) of ``scripts``."""
    want = set(scripts)
    out = []
    for piece, gid in tokenizer.get_vocab().items():
        text = piece[1:] if piece.startswith("\u2581") and len(piece) == 2 else piece
        if len(text) == 1 and script_of(text) in want:
            out.append(gid)
    return sorted(out)


def case_forms(piece: str) -> set[str]:
    """A token's case and leading-space variants (SentencePiece's ``▁`` word mark): the spellings one word takes at
    a sentence start, in a constant, after a space or inside an identifier."""
    core = piece.removeprefix("\u2581")
    forms = {core, core.lower(), core.upper(), core.capitalize(), core[:1].upper() + core[1:],
             core[:1].lower() + core[1:]}  # fmt: skip
    return {f for f in forms if f} | {"\u2581" + f for f in forms}


def case_variant_ids(tokenizer: Any, ids: Iterable[int]) -> list[int]:
    """Ids of the tokenizer's tokens that are case or leading-space variants of ``ids``' tokens (not ``ids``)."""
    ids = list(ids)
    vocab = tokenizer.get_vocab()
    have = set(ids)
    pieces = [p for p in tokenizer.convert_ids_to_tokens(ids) if p]
    out = {vocab[f] for piece in pieces for f in case_forms(piece) if f in vocab}
    return sorted(out - have)


def choose_rows(ranked: Sequence[int], forced: Iterable[int], select_counts: Counter[int],
                goal: float) -> tuple[int, float]:  # fmt: skip
    """The fewest of the ``ranked`` (most frequent first) tokens that, with the ``forced`` ones, cover ``goal`` of the
    selection split's tokens; all of them when the goal is out of reach. Returns (count, coverage reached)."""
    total = sum(select_counts.values())
    if not total:
        return len(ranked), float("nan")
    forced = set(forced)
    covered = sum(n for g, n in select_counts.items() if g in forced)
    if covered >= goal * total:
        return 0, covered / total
    for i, gid in enumerate(ranked, 1):
        if gid not in forced:
            covered += select_counts.get(gid, 0)
        if covered >= goal * total:
            return i, covered / total
    return len(ranked), covered / total


def select_vocab(cfg: CompactConfig, tok: Any, counts: Counter[int],
                 select_counts: Counter[int]) -> tuple[list[int], dict[str, Any]]:  # fmt: skip
    """Kept global ids (frequent counted tokens, then special, byte and served-script character tokens) and how they
    were chosen."""
    ranked = select_kept(counts, tok, cfg.train_coverage, forced=False)
    scripts = served_scripts(counts, tok, cfg.script_min_share) if cfg.script_chars else {}
    chars = script_char_ids(tok, scripts) if scripts else []
    forced = list(dict.fromkeys([*sorted(special_ids(tok)), *sorted(byte_token_ids(tok).values()), *chars]))
    n, reached = choose_rows(ranked, forced, select_counts, cfg.goal_coverage) if cfg.select_share else (
        len(ranked), float("nan"))  # fmt: skip
    met = bool(reached >= cfg.goal_coverage)
    frequent = ranked[:n]
    if not met and select_counts:  # out of reach with the counted tokens: rank the selection split's in too (more
        frequent = select_kept(counts + select_counts, tok, cfg.train_coverage, forced=False)  # text, same cap)
    seen = set(frequent)
    ids = frequent + [g for g in forced if g not in seen]
    variants = case_variant_ids(tok, frequent) if cfg.case_variants else []
    have = set(ids)
    ids += [g for g in variants if g not in have]
    info = {"n_frequent": len(frequent), "n_counted_distinct": len(ranked), "rows_for_goal": n if met else None,
            "select_coverage": reached, "select_goal_met": met, "select_tokens": sum(select_counts.values()),
            "select_share": cfg.select_share, "scripts": sorted(scripts),
            "script_char_tokens": len(chars), "case_variant_tokens": len(variants)}  # fmt: skip
    return ids, info


# ---- model surgery ---------------------------------------------------------------------------------------------


def compact_model(model: torch.nn.Module, tokenizer: Any, kept: KeptVocab) -> torch.nn.Module:
    """Slice the embedding (and an untied LM head) to the kept rows in local order; config ids become local."""
    idx = torch.tensor(kept.ids, dtype=torch.long)
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    with torch.no_grad():
        emb.weight = torch.nn.Parameter(emb.weight.data[idx].clone())
        emb.num_embeddings = len(kept)
        if getattr(emb, "padding_idx", None) is not None:
            emb.padding_idx = kept.local.get(emb.padding_idx)
        if head is not None:
            if tied:
                head.weight = emb.weight
            else:
                head.weight = torch.nn.Parameter(head.weight.data[idx].clone())
                if getattr(head, "bias", None) is not None:
                    head.bias = torch.nn.Parameter(head.bias.data[idx].clone())
            head.out_features = len(kept)
    cfg = model.config.get_text_config()
    cfg.vocab_size = len(kept)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        gid = getattr(cfg, name, None)
        if isinstance(gid, list):
            setattr(cfg, name, [kept.local[g] for g in gid if g in kept.local])
        elif gid is not None:
            setattr(cfg, name, kept.local.get(gid))
    return model


class GlobalInput(torch.nn.Module):
    """Input embedding of a local-vocabulary model that takes global ids (unknown ids read the unk row)."""

    def __init__(self, inner: torch.nn.Module, table: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("table", table, persistent=False)  # [V_global] -> local id

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.inner(self.table[input_ids])


class ScatterHead(torch.nn.Module):
    """LM head over the kept rows whose logits are scattered into the full vocabulary (others at a floor)."""

    def __init__(self, inner: torch.nn.Module, ids: torch.Tensor, vocab_size: int):
        super().__init__()
        self.inner, self.vocab_size = inner, vocab_size
        self.register_buffer("ids", ids, persistent=False)  # [K] local -> global id

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        local = self.inner(hidden)  # [..., K]
        out = local.new_full((*local.shape[:-1], self.vocab_size), FLOOR_LOGIT)  # [..., V]
        return out.index_copy_(-1, self.ids, local)


def to_global(model: torch.nn.Module, kept: KeptVocab) -> torch.nn.Module:
    """Wrap a local-vocabulary model so it takes and predicts the tokenizer's global ids (in place)."""
    dev = next(model.parameters()).device
    table = torch.tensor(kept.lookup_table(), dtype=torch.long, device=dev)
    model.set_input_embeddings(GlobalInput(model.get_input_embeddings(), table))
    head = model.get_output_embeddings()
    model.set_output_embeddings(ScatterHead(head, torch.tensor(kept.ids, dtype=torch.long, device=dev),
                                            kept.vocab_size))  # fmt: skip
    cfg = model.config.get_text_config()
    cfg.tie_word_embeddings = False  # the wrappers are not to be re-tied by transformers
    cfg.vocab_size = kept.vocab_size
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        lid = getattr(cfg, name, None)
        if isinstance(lid, list):
            setattr(cfg, name, [kept.ids[i] for i in lid])
        elif lid is not None:
            setattr(cfg, name, kept.ids[lid])
    gen = getattr(model, "generation_config", None)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if gen is not None:
            setattr(gen, name, getattr(cfg, name, None))
    return model


# ---- the report ------------------------------------------------------------------------------------------------


def greedy_agreement(reference: Sequence[Sequence[int]], other: Sequence[Sequence[int]]) -> dict[str, float]:
    """How far greedy outputs agree: identical sequences, tokens agreeing position by position, matching prefix."""
    same = sum(list(a) == list(b) for a, b in zip(reference, other, strict=True))
    pos = tot = prefix = 0
    for a, b in zip(reference, other, strict=True):
        n = min(len(a), len(b))
        pos += sum(x == y for x, y in zip(a[:n], b[:n], strict=True))
        tot += max(len(a), len(b))
        k = 0
        while k < n and a[k] == b[k]:
            k += 1
        prefix += k / max(len(a), 1)
    return {"identical_share": same / len(reference), "token_agreement": pos / tot if tot else 1.0,
            "matching_prefix_share": prefix / len(reference)}  # fmt: skip


def _greedy(model: torch.nn.Module, prompts: list[list[int]], new: int) -> tuple[list[list[int]], float]:
    """Greedy outputs for each prompt and the decode tokens per second over all of them (one pass)."""
    outputs, tokens, seconds = [], 0, 0.0
    for p in prompts:
        toks, stats = Stream(target_stream(model, p, new)).run()
        outputs.append(toks)
        tokens += len(toks)
        seconds += stats["total_s"]
    return outputs, tokens / seconds if seconds else 0.0


def measure(model: torch.nn.Module, score_tok: Any, texts: list[str], prefix: list[int],
            kept: KeptVocab | None = None) -> tuple[dict[str, Any], torch.nn.Module]:  # fmt: skip
    """Held-out bits per byte and size of one model variant, and the model that decodes global ids.

    A compact model comes in local ids: it is scored as it is (``score_tok`` a :class:`LocalTokenizer`), then
    wrapped by :func:`to_global` to decode the same global prompts as the untrimmed model. Its greedy outputs and
    tokens/s come from :func:`interleaved_speeds`.
    """
    loss = heldout_loss(model, score_tok, texts, prefix=prefix)
    if kept is not None:
        model = to_global(model, kept)
    return {"weight_bytes": weight_bytes(model), "bits_per_byte": loss["bits_per_byte"],
            "scored_tokens": loss["tokens"]}, model  # fmt: skip


def interleaved_speeds(models: dict[str, tuple[torch.nn.Module, list[list[int]]]], new: int,
                       rounds: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Greedy outputs and decode tokens/s of each variant (model, its prompts): ``rounds`` passes, every round one
    pass per variant in turn, so a change in machine load falls on all of them; the median pass and every pass (the
    first also warms each model up: the median leaves it out when it is the slow one)."""
    passes: dict[str, list[float]] = {name: [] for name in models}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(rounds):
        for name, (model, prompts) in models.items():
            out, tokens_per_second = _greedy(model, prompts, new)
            outputs.setdefault(name, out)
            passes[name].append(tokens_per_second)
    return {name: {"outputs": outputs[name], "tokens_per_second": statistics.median(p),
                   "tokens_per_second_passes": p} for name, p in passes.items()}  # fmt: skip


def build_report(cfg: CompactConfig, src: Path, out: Path, kept: KeptVocab, tok: Any, run_dir: str,
                 held_counts: Counter[int]) -> dict[str, Any]:  # fmt: skip
    """Untrimmed vs compact (fp32 and each quantizer): size, tokens/s, bits per byte, greedy agreement."""
    from transformers import AutoModelForCausalLM  # heavy: deferred until used

    r = cfg.report
    # the served traffic: held-out requests stratified over language x domain, as the measurement draws them
    source = _run_path(cfg.curated, run_dir, "curated").name
    reqs = build_requests(run_dir, r.eval_docs + r.prompts, r.prompt_bytes, r.reference_bytes, seed=7,
                          languages=cfg.langs, source=source)  # fmt: skip
    if cfg.domains:
        reqs = [q for q in reqs if q["domain"] in cfg.domains]
    texts = [q["prompt"] + q["reference"] for q in reqs[: r.eval_docs]]
    prompt_texts = [q["prompt"] for q in reqs[r.eval_docs :]] or [q["prompt"] for q in reqs[: r.prompts]]
    bos = [tok.bos_token_id] if _adds_bos(tok) else []
    full_prompts = [bos + tok(t, add_special_tokens=False)["input_ids"] for t in prompt_texts]
    kept.attach(tok)
    compact_prompts = [kept.respell(p) for p in full_prompts]
    rows: dict[str, Any] = {}
    decoders: dict[str, tuple[torch.nn.Module, list[list[int]]]] = {}  # every variant stays loaded for the timing
    full = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    rows["untrimmed"], model = measure(full, tok, texts, bos)
    decoders["untrimmed"] = (model, full_prompts)
    local_tok = LocalTokenizer(tok, kept)
    local_bos = [local_tok.bos_token_id] if bos else []
    for method in ["none", *r.quantization]:
        name = "compact" if method == "none" else f"compact_{method}"
        model = quantize_model(AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval(), method)
        rows[name], model = measure(model, local_tok, texts, local_bos, kept)
        decoders[name] = (model, compact_prompts)
    for name, speed in interleaved_speeds(decoders, r.new_tokens, r.rounds).items():
        rows[name].update(speed)
    del decoders, model, full
    base = rows["untrimmed"]
    for name, row in rows.items():
        if name == "untrimmed":
            continue
        row["size_ratio"] = base["weight_bytes"] / row["weight_bytes"]
        row["speed_ratio"] = row["tokens_per_second"] / base["tokens_per_second"]
        row["bits_per_byte_delta"] = row["bits_per_byte"] - base["bits_per_byte"]
        row["greedy_agreement"] = greedy_agreement(base["outputs"], row["outputs"])
    for row in rows.values():
        row["outputs"] = [tok.decode(o) for o in row.pop("outputs")]
    return {"models": rows, "prompts": len(full_prompts), "new_tokens": r.new_tokens, "rounds": r.rounds,
            "eval_docs": len(texts),
            "heldout_coverage": coverage(held_counts, kept), "goal_coverage": cfg.goal_coverage,
            "coverage_met": coverage(held_counts, kept) >= cfg.goal_coverage}  # fmt: skip


def _adds_bos(tok: Any) -> bool:
    ids = tok("a")["input_ids"]
    return bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id


# ---- the stage -------------------------------------------------------------------------------------------------


def compact(cfg: CompactConfig, run_dir: str) -> dict[str, Any]:
    """Count, select, save the compact model (atomically) and its report; returns the report."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: deferred until used

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    src = _run_path(cfg.model, run_dir, "models")
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src}: no model to compact (config.json missing); run the step that writes it")
    bad = [m for m in cfg.report.quantization if m not in QUANTIZERS]
    if bad:
        raise ValueError(f"compact.report.quantization: unknown {bad}; expected {sorted(QUANTIZERS)}")
    tok = AutoTokenizer.from_pretrained(str(src))
    curated = _run_path(cfg.curated, run_dir, "curated")
    parts = {part: count_tokens(tok, iter_split(curated, part, cfg.langs, cfg.domains, cfg.max_docs,
                                                cfg.select_share))
             for part in (PARTS if cfg.select_share else ("count", "heldout"))}  # fmt: skip
    train, held = parts["count"], parts["heldout"]
    ids, info = select_vocab(cfg, tok, train, parts.get("select", Counter()))
    unk = tok.unk_token_id if tok.unk_token_id is not None else ids[-1]
    kept = KeptVocab(ids if unk in ids else [*ids, unk], len(tok), unk,
                     {"source_model": str(src), "train_tokens": sum(train.values()), **info,
                      "heldout_tokens": sum(held.values()), "train_coverage": cfg.train_coverage})  # fmt: skip
    kept.meta["heldout_coverage"] = coverage(held, kept)
    log.info(kv(kept=len(kept), vocab=len(tok), heldout_coverage=f"{kept.meta['heldout_coverage']:.5f}"))
    final = Path(RunDir(run_dir).stage("models")) / cfg.output
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        compact_model(model, tok, kept).save_pretrained(str(tmp), safe_serialization=True)
        del model
        tok.save_pretrained(str(tmp))
        kept.save(tmp)
        report = build_report(cfg, src, tmp, kept, tok, run_dir, held)
        report.update(kept=len(kept), vocab_size=len(tok), source_model=str(src), selection=info)
        write_json(tmp / "compact_report.json", report)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def run_compact(cfg: CompactConfig, run_dir: str) -> dict[str, Any]:
    """The compact model under ``<run>/models/<output>/`` (skipped when config and source are unchanged)."""
    rd = RunDir(run_dir)
    stage = f"models/{cfg.output}"
    src = _run_path(cfg.model, run_dir, "models")
    # the completion marker of the stage that wrote the source (models/NAME/merged was written by models/NAME's)
    marker = next((d / "_DONE.json" for d in (src, *src.parents) if (d / "_DONE.json").is_file()), None)
    src_key = read_json(marker).get("inputs_hash") if marker else sha256_file(src / "config.json")
    curated = _run_path(cfg.curated, run_dir, "curated") / "_DONE.json"
    key = hash_obj({"cfg": cfg.model_dump(exclude={"threads"}), "src": src_key,
                    "curated": read_json(curated).get("inputs_hash") if curated.is_file() else None})  # fmt: skip
    if rd.is_done(stage, key):
        return read_json(rd.path(stage, "compact_report.json"))
    report = compact(cfg, run_dir)
    rd.mark_done(stage, key, {"kept": report["kept"], "heldout_coverage": report["heldout_coverage"]})
    return report


def summarize(report: dict[str, Any]) -> str:
    """One line: kept tokens, coverage, and the fastest compact variant (fp32 or quantized) vs the untrimmed one."""
    rows = {n: r for n, r in report["models"].items() if n.startswith("compact")}
    name = max(rows, key=lambda n: rows[n]["speed_ratio"])
    best = rows[name]
    name = name.replace("compact_", "compact+")
    return (
        f"kept {report['kept']:,} of {report['vocab_size']:,} tokens, held-out coverage "
        f"{100 * report['heldout_coverage']:.2f}% (goal {100 * report['goal_coverage']:.1f}%"
        f"{'' if report['coverage_met'] else ', not met'}); {name}: {best['size_ratio']:.1f}x smaller, "
        f"{best['speed_ratio']:.2f}x tokens/s, bpb {best['bits_per_byte_delta']:+.3f}, greedy identical "
        f"{100 * best['greedy_agreement']['identical_share']:.0f}%"
    )


def run_stage(config_path: str, run_dir: str) -> str:
    """Stage ``compact``: trim the configured model's vocabulary to the curated corpus; report vs untrimmed."""
    return summarize(run_compact(load_section(config_path, "compact", CompactConfig), run_dir))
