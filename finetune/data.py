"""Training and eval data from curated Parquet: streaming, plan-weighted language mixing, token packing.

Documents stream (never a corpus in a list): training interleaves up to ``mix_shards`` shards in a seeded order, then a
seeded shuffle buffer mixes further. Training skips held-out
documents (:func:`tokenwise.splits.is_heldout`); evaluation uses only them. A sampling plan (``<run>/plans/NAME.json``,
``{"languages": {lang: {"weight", ...}}}``) picks each next document's language with probability ``weight``; each
language's stream restarts when exhausted (that is what a plan's ``epochs`` > 1 means). Documents are tokenized, joined
with EOS and cut into ``seq_len`` blocks; a final partial block is padded and its padding masked out of the loss.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import torch

from finetune.config import DataConfig
from finetune.metrics import IGNORE, start_token_id
from tokenwise.rundir import read_json
from tokenwise.splits import is_heldout

COLUMNS = ["id", "text", "lang", "domain", "unit_id"]


class DataError(ValueError):
    """Training or eval data that cannot be used (missing, empty, malformed)."""


def resolve(spec: str, run_dir: str | None, kind: str) -> str:
    """``run:NAME`` -> ``<run>/<kind>/NAME`` (``run:curated`` -> ``<run>/curated``; ``run:models/NAME`` names the
    run-dir path itself); other specs are paths."""
    if not spec.startswith("run:"):
        return spec.removeprefix("hf:")
    name = spec[4:]
    if not run_dir:
        raise DataError(f"{spec}: run: paths need --run")
    explicit = name.split("/", 1)[0] in ("models", "tokenizers", "curated", "plans")
    return str(Path(run_dir) / name) if name == kind or kind == "" or explicit else str(Path(run_dir) / kind / name)


def shard_paths(curated: str) -> list[Path]:
    """Sorted ``shard-*.parquet`` files of a curated dir; a clear error when there are none."""
    files = sorted(Path(curated).glob("shard-*.parquet"))
    if not files:
        raise DataError(
            f"{curated}: no shard-*.parquet files; run `tokenwise curate decide` first or set data.curated"
        )
    return files


def iter_docs(
    curated: str, split: str, data: DataConfig, langs: list[str] | None = None, seed: int | str | None = None
) -> Iterator[str]:
    """Texts of one split (``train`` or ``eval``) matching the domain/language filters, streamed shard by shard.

    With ``seed``, shards are read in a seeded order and up to ``data.mix_shards`` at a time are interleaved (each
    next document drawn from a shard with probability proportional to its unread rows): shards hold one source each,
    so reading them one after another would train on one catalog or package at a time.
    """
    paths = shard_paths(curated)
    if seed is None:
        for path in paths:
            yield from _shard_docs(path, split, data, langs)
        return
    rng = random.Random(seed)
    rng.shuffle(paths)
    pending = iter(paths)
    active: list[Iterator[str]] = []
    left: list[int] = []

    def refill() -> None:
        while len(active) < data.mix_shards:
            path = next(pending, None)
            if path is None:
                return
            active.append(_shard_docs(path, split, data, langs))
            left.append(max(1, pq.ParquetFile(path).metadata.num_rows))

    refill()
    while active:
        i = rng.choices(range(len(active)), left)[0] if len(active) > 1 else 0
        text = next(active[i], None)
        if text is None:
            del active[i], left[i]
            refill()
            continue
        left[i] = max(1, left[i] - 1)
        yield text


def _shard_docs(path: Path, split: str, data: DataConfig, langs: list[str] | None) -> Iterator[str]:
    for row in _shard_rows(path, split, data, langs):
        yield row["text"]


def _shard_rows(path: Path, split: str, data: DataConfig, langs: list[str] | None) -> Iterator[dict]:
    """Rows of one shard in ``split`` that pass the domain/language filters and have text."""
    langs = langs if langs is not None else data.langs
    pf = pq.ParquetFile(path)
    missing = {"id", "text"} - set(pf.schema_arrow.names)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}; expected the corpus schema {COLUMNS}")
    cols = [c for c in COLUMNS if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(columns=cols, batch_size=1024):
        for row in batch.to_pylist():
            if data.domains and row.get("domain") not in data.domains:
                continue
            if langs and row.get("lang") not in langs:
                continue
            if (split == "eval") != is_heldout(row["id"], row.get("unit_id")):
                continue
            if row["text"]:
                yield row


def eval_sets(curated: str, data: DataConfig, langs: list[str] | None = None) -> dict[str, list[str]]:
    """Held-out eval texts per domain, ``data.eval_docs`` in all (deterministic); an error if there are none.

    ``eval_sample: spread`` (default) reads every held-out document and keeps those with the smallest hash of their id,
    an equal share per domain (a short domain's unused share goes to the others), so the set spans the corpus instead
    of the first shard's catalog; texts are cut to ``data.eval_max_chars``. ``first`` keeps the first ones in shard
    order (cheap on a huge corpus).
    """
    langs = langs if langs is not None else data.langs
    cut = (lambda t: t[: data.eval_max_chars]) if data.eval_max_chars else (lambda t: t)
    if data.eval_sample == "first":
        out: dict[str, list[str]] = {}
        n = 0
        for path in shard_paths(curated):
            for row in _shard_rows(path, "eval", data, langs):
                out.setdefault(row.get("domain") or "all", []).append(cut(row["text"]))
                n += 1
                if n >= data.eval_docs:
                    return out
        return _nonempty(out, curated, data, langs)
    heaps: dict[str, list[tuple[int, str]]] = {}
    for path in shard_paths(curated):
        for row in _shard_rows(path, "eval", data, langs):
            h = -int.from_bytes(hashlib.blake2b(str(row["id"]).encode(), digest_size=8).digest(), "big")
            heap = heaps.setdefault(row.get("domain") or "all", [])
            item = (h, cut(row["text"]))
            if len(heap) < data.eval_docs:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    ranked = {d: [t for _, t in sorted(h, reverse=True)] for d, h in sorted(heaps.items())}
    out, taken = {d: [] for d in ranked}, 0
    while taken < data.eval_docs and any(len(out[d]) < len(ranked[d]) for d in ranked):
        for d in ranked:
            if taken < data.eval_docs and len(out[d]) < len(ranked[d]):
                out[d].append(ranked[d][len(out[d])])
                taken += 1
    return _nonempty({d: v for d, v in out.items() if v}, curated, data, langs)


def _nonempty(out: dict[str, list[str]], curated: str, data: DataConfig, langs) -> dict[str, list[str]]:
    if not out:
        raise DataError(f"{curated}: no held-out documents match domains={data.domains} langs={langs or data.langs}")
    return out


def eval_texts(curated: str, data: DataConfig, langs: list[str] | None = None) -> list[str]:
    """:func:`eval_sets` flattened round-robin over domains, so any prefix (a quick eval) stays balanced."""
    sets = list(eval_sets(curated, data, langs).values())
    return [s[i] for i in range(max(map(len, sets))) for s in sets if i < len(s)]


def plan_weights(run_dir: str | None, plan: str | None) -> dict[str, float] | None:
    """Per-language weights of a sampling plan, normalised; None when no plan is set."""
    if not plan:
        return None
    path = Path(resolve(f"run:{plan}.json", run_dir, "plans")) if "/" not in plan else Path(plan)
    if not path.is_file():
        raise DataError(f"{path}: sampling plan not found; run the curation plan step or unset data.plan")
    langs = read_json(path).get("languages") or {}
    w = {k: float(v.get("weight", v.get("tokens", 0)) if isinstance(v, dict) else v) for k, v in langs.items()}
    w = {k: v for k, v in w.items() if v > 0}
    if not w:
        raise DataError(f"{path}: plan has no language with a positive weight")
    total = sum(w.values())
    return {k: v / total for k, v in sorted(w.items())}


def _cycle(make: Callable[[int], Iterator[str]], what: str, limit: int | None) -> Iterator[str]:
    epoch = 0
    while True:
        n = 0
        for text in make(epoch):
            yield text
            n += 1
            if limit and n >= limit:
                break
        if n == 0:
            raise DataError(f"empty training set: no training documents for {what}")
        epoch += 1


def train_texts(curated: str, data: DataConfig, run_dir: str | None, seed: int) -> Iterator[str]:
    """An endless, seeded stream of training texts, language-mixed by the plan when one is set."""
    weights = plan_weights(run_dir, data.plan)
    if data.langs and weights:
        weights = {k: v for k, v in weights.items() if k in data.langs} or None
    if not weights:
        docs = _cycle(
            lambda e: iter_docs(curated, "train", data, seed=f"{seed}:{e}"), _what(curated, data), data.max_train_docs
        )
        yield from shuffled(docs, random.Random(seed))
        return
    streams = {
        lang: _cycle(
            lambda e, lang=lang: iter_docs(curated, "train", data, [lang], seed=f"{seed}:{lang}:{e}"),
            f"lang={lang}",
            data.max_train_docs,
        )
        for lang in weights
    }
    streams = {lang: shuffled(s, random.Random(f"{seed}:{lang}")) for lang, s in streams.items()}
    rng = random.Random(seed)
    langs, probs = list(weights), list(weights.values())
    while True:
        yield next(streams[rng.choices(langs, probs)[0]])


def shuffled(items: Iterator[str], rng: random.Random, buffer: int = 1024) -> Iterator[str]:
    """A seeded streaming shuffle: shards hold documents grouped by source, training wants them mixed."""
    buf: list[str] = []
    for item in items:
        if len(buf) < buffer:
            buf.append(item)
            continue
        i = rng.randrange(buffer)
        yield buf[i]
        buf[i] = item
    rng.shuffle(buf)
    yield from buf


def _what(curated: str, data: DataConfig) -> str:
    return f"{curated} (domains={data.domains}, langs={data.langs}, held-out excluded)"


class PackedBatches:
    """Endless batches of packed ``seq_len`` blocks with a resumable position (batches consumed).

    Resuming re-reads the deterministic stream and skips the consumed batches, so a resumed run sees exactly the
    batches an uninterrupted one would.
    """

    def __init__(self, texts: Callable[[], Iterator[str]], tokenizer, seq_len: int, batch_size: int):
        self.texts, self.tok, self.seq_len, self.batch_size = texts, tokenizer, seq_len, batch_size
        self.eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else start_token_id(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.position = 0
        self._it: Iterator[dict[str, torch.Tensor]] | None = None

    def state_dict(self) -> dict:
        return {"batches": self.position}

    def load_state_dict(self, state: dict) -> None:
        self._it, self.position = None, 0
        for _ in range(state["batches"]):
            next(self)

    def __iter__(self) -> PackedBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self._it = self._batches()
        batch = next(self._it)
        self.position += 1
        return batch

    def _blocks(self) -> Iterator[list[int]]:
        buf: list[int] = []
        for text in self.texts():
            buf.extend(self.tok(text, add_special_tokens=False)["input_ids"])
            buf.append(self.eos)
            while len(buf) >= self.seq_len:
                yield buf[: self.seq_len]
                buf = buf[self.seq_len :]
        if buf:
            yield buf

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        block: list[list[int]] = []
        for b in self._blocks():
            block.append(b)
            if len(block) == self.batch_size:
                yield collate_blocks(block, self.seq_len, self.pad)
                block = []
        if block:
            yield collate_blocks(block, self.seq_len, self.pad)


def collate_blocks(blocks: list[list[int]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Stack blocks into ``input_ids``/``attention_mask``/``labels`` [B, seq_len]; padding gets label -100."""
    ids = torch.full((len(blocks), seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(blocks), seq_len), dtype=torch.long)
    for i, b in enumerate(blocks):
        ids[i, : len(b)] = torch.tensor(b)
        mask[i, : len(b)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def finite_texts(texts: list[str]) -> Callable[[], Iterator[str]]:
    """A text source over an in-memory list, for tests and tiny fixtures (cycles forever)."""
    if not texts:
        raise DataError("empty training set: no texts given")

    def gen() -> Iterator[str]:
        while True:
            yield from texts

    return gen
