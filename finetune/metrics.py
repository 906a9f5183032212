"""Bits per byte and perplexity of a causal LM on held-out texts.

Bits per byte = (sum of token NLL in nats) / (ln 2 * UTF-8 bytes of the text). It divides by bytes, not tokens, so two
models with different tokenizers are compared on the same text honestly. Every token of a document is predicted from a
start token (BOS, else EOS) and its preceding tokens; documents longer than ``seq_len`` are scored in consecutive
windows, each conditioned on the last token of the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

IGNORE = -100


@dataclass
class EvalResult:
    """Summed NLL over predicted tokens, and the token and byte counts it covers."""

    nll_nats: float
    tokens: int
    bytes: int
    docs: int

    @property
    def loss(self) -> float:
        return self.nll_nats / max(self.tokens, 1)

    @property
    def bits_per_byte(self) -> float:
        return bits_per_byte(self.nll_nats, self.bytes)

    @property
    def perplexity(self) -> float:
        return perplexity(self.nll_nats, self.tokens)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(loss=self.loss, bits_per_byte=self.bits_per_byte, perplexity=self.perplexity)
        return d


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Sum of token NLL (nats) over ln 2 times the UTF-8 byte count of the text it predicts."""
    if n_bytes <= 0:
        raise ValueError("bits per byte needs at least one byte of text")
    return nll_nats / (math.log(2) * n_bytes)


def perplexity(nll_nats: float, n_tokens: int) -> float:
    """exp(mean token NLL); tokenizer-dependent, so compare only within one tokenizer."""
    return math.exp(nll_nats / max(n_tokens, 1))


def start_token_id(tokenizer) -> int:
    """The token every document is predicted from: BOS, else EOS."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has neither a BOS nor an EOS token; "
            "add one (e.g. <|endoftext|>) so documents can be separated and scored"
        )
    return tid


def doc_windows(ids: list[int], start: int, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """Split ``[start] + ids`` into (inputs, targets) windows of at most ``seq_len`` predictions each."""
    seq = [start, *ids]
    # window i predicts seq[i*L+1 : (i+1)*L+1] from seq[i*L : (i+1)*L]
    out = []
    for i in range(0, len(ids), seq_len):
        targets = seq[i + 1 : i + seq_len + 1]
        out.append((seq[i : i + len(targets)], targets))
    return out


def _batches(windows: Iterable[tuple[list[int], list[int]]], batch_size: int):
    batch: list = []
    for w in windows:
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device):
    width = max(len(x) for x, _ in batch)
    inp = torch.full((len(batch), width), pad_id, dtype=torch.long)
    lab = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        inp[i, : len(x)] = torch.tensor(x)
        lab[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return inp.to(device), lab.to(device), mask.to(device)


@torch.no_grad()
def token_nll(model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Summed NLL (nats, fp32) of ``labels`` aligned with ``input_ids`` (labels already shifted; -100 ignored)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # [B, S, V]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def evaluate_texts(
    model, tokenizer, texts: Iterable[str], seq_len: int, batch_size: int = 8, device: torch.device | None = None
) -> EvalResult:
    """NLL, tokens and bytes of ``texts`` under ``model``; see module docstring for how tokens are predicted."""
    device = device or next(model.parameters()).device
    start = start_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
    n_bytes = n_docs = 0
    windows: list[tuple[list[int], list[int]]] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        n_bytes += len(text.encode("utf-8"))
        n_docs += 1
        windows.extend(doc_windows(ids, start, seq_len))
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    for batch in _batches(windows, batch_size):
        inp, lab, mask = _collate(batch, pad, device)
        nll += token_nll(model, inp, lab, mask).item()
        tokens += int((lab != IGNORE).sum())
    model.train(was_training)
    return EvalResult(nll, tokens, n_bytes, n_docs)


def evaluate_sets(
    model, tokenizer, sets: dict[str, list[str]], seq_len: int, batch_size: int = 8, device: torch.device | None = None
) -> tuple[EvalResult, dict[str, EvalResult]]:
    """:func:`evaluate_texts` per named set (e.g. per domain) and their sum (sums of NLL, tokens and bytes)."""
    parts = {
        name: evaluate_texts(model, tokenizer, texts, seq_len, batch_size, device) for name, texts in sets.items()
    }
    total = EvalResult(
        sum(r.nll_nats for r in parts.values()),
        sum(r.tokens for r in parts.values()),
        sum(r.bytes for r in parts.values()),
        sum(r.docs for r in parts.values()),
    )
    return total, parts
