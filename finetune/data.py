"""Training and eval data from curated Parquet: streaming, plan-weighted language mixing, token packing.

Documents stream shard by shard (never a corpus in a list) through a seeded shuffle buffer. Training skips held-out
documents (:func:`curation.splits.is_heldout`); evaluation uses only them. A sampling plan (``<run>/plans/NAME.json``,
``{"languages": {lang: {"weight", ...}}}``) picks each next document's language with probability ``weight``; each
language's stream restarts when exhausted (that is what a plan's ``epochs`` > 1 means). Documents are tokenized, joined
with EOS and cut into ``seq_len`` blocks; a final partial block is padded and its padding masked out of the loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import torch

from curation.rundir import read_json
from curation.splits import is_heldout
from finetune.config import DataConfig
from finetune.metrics import IGNORE, start_token_id

COLUMNS = ["id", "text", "lang", "domain", "unit_id"]


class DataError(ValueError):
    """Training or eval data that cannot be used (missing, empty, malformed)."""


def resolve(spec: str, run_dir: str | None, kind: str) -> str:
    """``run:NAME`` -> ``<run>/<kind>/NAME`` (``run:curated`` -> ``<run>/curated``); other specs are paths."""
    if not spec.startswith("run:"):
        return spec.removeprefix("hf:")
    name = spec[4:]
    if not run_dir:
        raise DataError(f"{spec}: run: paths need --run")
    return str(Path(run_dir) / name) if name == kind or kind == "" else str(Path(run_dir) / kind / name)


def shard_paths(curated: str) -> list[Path]:
    """Sorted ``shard-*.parquet`` files of a curated dir; a clear error when there are none."""
    files = sorted(Path(curated).glob("shard-*.parquet"))
    if not files:
        raise DataError(
            f"{curated}: no shard-*.parquet files; run `tokenwise curate decide` first or set data.curated"
        )
    return files


def iter_docs(curated: str, split: str, data: DataConfig, langs: list[str] | None = None) -> Iterator[str]:
    """Texts of one split (``train`` or ``eval``) matching the domain/language filters, streamed shard by shard."""
    langs = langs if langs is not None else data.langs
    for path in shard_paths(curated):
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
                    yield row["text"]


def eval_texts(curated: str, data: DataConfig, langs: list[str] | None = None) -> list[str]:
    """The first ``data.eval_docs`` held-out texts (deterministic); an error if there are none."""
    out: list[str] = []
    for text in iter_docs(curated, "eval", data, langs):
        out.append(text)
        if len(out) >= data.eval_docs:
            break
    if not out:
        raise DataError(f"{curated}: no held-out documents match domains={data.domains} langs={langs or data.langs}")
    return out


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


def _cycle(make: Callable[[], Iterator[str]], what: str, limit: int | None) -> Iterator[str]:
    while True:
        n = 0
        for text in make():
            yield text
            n += 1
            if limit and n >= limit:
                break
        if n == 0:
            raise DataError(f"empty training set: no training documents for {what}")


def train_texts(curated: str, data: DataConfig, run_dir: str | None, seed: int) -> Iterator[str]:
    """An endless, seeded stream of training texts, language-mixed by the plan when one is set."""
    weights = plan_weights(run_dir, data.plan)
    if data.langs and weights:
        weights = {k: v for k, v in weights.items() if k in data.langs} or None
    if not weights:
        docs = _cycle(lambda: iter_docs(curated, "train", data), _what(curated, data), data.max_train_docs)
        yield from shuffled(docs, random.Random(seed))
        return
    streams = {
        lang: _cycle(lambda lang=lang: iter_docs(curated, "train", data, [lang]), f"lang={lang}", data.max_train_docs)
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
