"""Exact greedy tokens from a large LM head at a fraction of its memory reads: an int8 screen, then fp32 on a few rows.

A CPU decode step of Gemma 3 270M spends over half its time in the LM head, a ``[262144, 640]`` fp32 matrix (671 MB
read per step, bound by memory bandwidth). A greedy request needs only the argmax of that product, not every logit.
:class:`ScreenedHead` replaces the output embeddings with a module that, while screening is on (:meth:`screening`,
per thread), computes for each row:

1. an approximate logit for every vocabulary row: the hidden state's largest dimensions (fixed ``outlier_dims``,
   picked once from a calibration pass; Gemma's final hidden state has a few dimensions 10-50x the median) in fp32
   against a ``[V, k]`` copy of those columns, the rest scaled to max ``|x| = 1`` per row and multiplied as int8 x
   int8 (``quantized::linear_dynamic``: weights quantized per vocabulary row, activations per call), ~1/3 of the
   fp32 head's bytes;
2. a rigorous bound on each approximation's error: with ``x = x' + d`` (``|d| <= s_x/2``, ``s_x`` at most the
   activations' range / 127 whatever scheme the backend picks) and ``w = s_w w' + e`` (``|e| <= s_w/2``),
   ``|x.w - x'.(s_w w')| <= s_x/2 * |w|_1 + |x'|_1 * s_w/2`` (a relative and an absolute slack cover float rounding);
3. the rows whose upper bound reaches the best lower bound (the true argmax is always among them; tens to a few
   hundred of 262k on Gemma), scored exactly in fp32. Their logits are returned in a full-width tensor filled with
   ``-inf`` elsewhere, so callers' ``argmax`` (greedy pick, greedy speculative verification) is unchanged.

On the 2-core Xeon of ``bench/batch_step.py`` (Gemma 3 270M, real hidden states; ``head_screen_ms`` in
``batch_step.json``): 1 row 10.0 vs 23.8 ms, 8 rows 22.9 vs 52.7 ms (the full head padded to 16 rows), the same
greedy tokens. Memory: an int8 copy of the head plus the outlier columns in fp32 (~0.3x the head's fp32 bytes).

The greedy token equals the fp32 head's (up to ties within float rounding, as between any two batch sizes). Callers
turn screening on only for passes whose every row is greedy and needs no log-probs: sampling and scores need the full
distribution, and get it from the plain fp32 product (the default, also for every other thread).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import torch
from torch import nn

from serving.quantize.int8_outliers import pack_int8_rows

log = logging.getLogger(__name__)

MIN_VOCAB = 32768  # smaller heads are cheap already: left alone
OUTLIER_SHARE = 20  # exact dimensions: hidden_size / OUTLIER_SHARE (rounded up to a multiple of 8)
MAX_CANDIDATE_SHARE = 0.05  # a row with more candidates than this share of the vocabulary is scored in full
REL_SLACK, ABS_SLACK = 1e-3, 1e-3  # float rounding of the products and sums, far above its size


class ScreenedHead(nn.Module):
    """An fp32 LM head (``linear``, kept: its weight may be tied to the input embeddings) that screens when asked."""

    def __init__(self, linear: nn.Linear, outlier_dims: torch.Tensor) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("ScreenedHead: heads with a bias are not supported")
        self.linear = linear
        self.weight = linear.weight  # same Parameter: tied embeddings, compaction and padding read it here
        self.register_parameter("bias", None)  # read like an nn.Linear's by code that checks for a bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        keep = torch.ones(w.shape[1], dtype=torch.bool)
        keep[outlier_dims] = False
        self.register_buffer("outlier_dims", outlier_dims.clone(), persistent=False)
        self.register_buffer("rest_dims", keep.nonzero().flatten(), persistent=False)
        self.register_buffer("w_outlier_t", w[:, outlier_dims].T.contiguous(), persistent=False)  # [k, V]
        rest = w[:, keep]
        self._packed, s_w = pack_int8_rows(rest)  # int8 [V, D-k], a scale per vocabulary row
        self.register_buffer("s_w", s_w, persistent=False)
        self.register_buffer("half_l1", rest.abs().sum(1) / 2, persistent=False)
        self.rest_count = rest.shape[1]
        self._local = threading.local()
        self.stats = {"screened_rows": 0, "candidates": 0, "full_rows": 0}

    @property
    def active(self) -> bool:
        """Whether the calling thread's forward passes screen."""
        return getattr(self._local, "on", False)

    @contextlib.contextmanager
    def screening(self, on: bool = True) -> Iterator[None]:
        """Screen this thread's forward passes inside the block (only the greedy argmax of the output is exact)."""
        before = self.active
        self._local.on = on
        try:
            yield
        finally:
            self._local.on = before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or x.numel() == 0:  # off, or a pass that keeps no logits (a prompt chunk mid-prompt)
            return self.linear(x)
        flat = x.reshape(-1, x.shape[-1]).float()
        out = torch.full((flat.shape[0], self.out_features), float("-inf"), device=x.device)
        rows, cols, logits = self.candidates(flat)
        out[rows, cols] = logits
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def approximate(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate logits of ``h`` [n, D] and a bound on each one's error, both [n, V] and in units of each row's
        scale (a positive factor per row: argmax and comparisons are unchanged)."""
        rest = h[:, self.rest_dims]
        # each row scaled to max |x| = 1 first: the backend quantizes a call's activations with one scale, which
        # then fits every row alike (a row's argmax and its bounds scale with it; exact logits use h itself)
        unit = rest.abs().amax(1, keepdim=True).clamp_min(1e-30)  # [n, 1]
        rest = rest / unit
        # activations quantized per call to 8 bits (reduce_range=False): step range/255, each one off by at most a
        # step (rounding, and an extreme one clamped by the zero point's nudge) <= s_x/2 with s_x = range/127
        approx = torch.ops.quantized.linear_dynamic(rest, self._packed, False)  # [n, V]
        approx.addmm_(h[:, self.outlier_dims] / unit, self.w_outlier_t)
        # |x.w - approx| <= s_x/2 |w|_1 + (|x|_1 + D s_x/2) s_w/2 per vocabulary row w; slack for float rounding
        s_x = float(rest.max().clamp_min(0) - rest.min().clamp_max(0)) / 127.0
        half_x1 = (rest.abs().sum(1) + self.rest_count * s_x / 2) / 2  # [n]
        slack = REL_SLACK * approx.abs().amax(1) + ABS_SLACK  # [n]
        bound = torch.addcmul(self.half_l1 * s_x, half_x1[:, None], self.s_w[None])
        return approx, bound.mul_(1 + REL_SLACK).add_(slack[:, None])

    def candidates(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, vocabulary id, exact fp32 logit) of every pair of a row of ``h`` [n, D] and an id that may be that
        row's argmax (all ids for a row with too many)."""
        n = h.shape[0]
        approx, bound = self.approximate(h)
        lower = (approx - bound).amax(1)  # the argmax's logit is above it
        r, c = (bound.add_(approx) >= lower[:, None]).nonzero(as_tuple=True)
        counts = torch.bincount(r, minlength=n)
        self.stats["screened_rows"] += n
        self.stats["candidates"] += len(r)
        wide = counts > MAX_CANDIDATE_SHARE * self.out_features
        if wide.any():  # rare: such rows are scored in full
            self.stats["full_rows"] += int(wide.sum())
            narrow = ~wide[r]
            r, c = r[narrow], c[narrow]
            rw = wide.nonzero().flatten()
            rr = rw.repeat_interleave(self.out_features)
            cc = torch.arange(self.out_features).repeat(len(rw))
            full = (h[rw] @ self.linear.weight.T).flatten()
            return torch.cat([r, rr]), torch.cat([c, cc]), torch.cat([(self.linear.weight[c] * h[r]).sum(1), full])
        return r, c, (self.linear.weight[c] * h[r]).sum(1)

    def bound_holds(self, h: torch.Tensor, rows_per_call: int = 8) -> bool:
        """Whether every error bound holds against the fp32 product on ``h`` (calls of ``rows_per_call`` rows, as in
        decoding): checks the backend's activation quantization is the one the bound assumes."""
        with torch.inference_mode():
            for i in range(0, h.shape[0], rows_per_call):
                x = h[i : i + rows_per_call].float()
                approx, bound = self.approximate(x)
                unit = x[:, self.rest_dims].abs().amax(1, keepdim=True).clamp_min(1e-30)
                if not ((self.linear(x) / unit - approx).abs() <= bound).all():
                    return False
        return True


def head_inputs(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The output embeddings' input [positions, D] (fp32) on one pass over ``input_ids`` [1, S]."""
    head = model.get_output_embeddings()
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().flatten(0, -2)))
    try:
        with torch.inference_mode():
            model(input_ids=input_ids.to(head.weight.device))
    finally:
        handle.remove()
    return seen[0].float()


def calibration_hidden(model: nn.Module, tokens: int = 128, seed: int = 0) -> torch.Tensor:
    """The head's input [tokens, D] on a pass over seeded random token ids (which dimensions carry the outliers is
    a property of the model, not of the text)."""
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(seed))
    return head_inputs(model, ids)


def outlier_dims(hidden: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` dimensions of largest mean magnitude (the bound holds whichever are chosen: a poor choice only
    costs candidates)."""
    return hidden.abs().mean(0).topk(count).indices.sort().values.cpu()


def install_head_screen(model: nn.Module, min_vocab: int = MIN_VOCAB) -> ScreenedHead | None:
    """Install a :class:`ScreenedHead` as ``model``'s output embeddings (once per model object; returns it), or None
    where it cannot help: not on CPU, not fp32, a vocabulary under ``min_vocab`` or a bias."""
    head = model.get_output_embeddings()
    if isinstance(head, ScreenedHead):
        return head
    if not isinstance(head, nn.Linear) or head.bias is not None or head.weight.device.type != "cpu":
        return None
    if head.weight.dtype != torch.float32 or head.out_features < min_vocab:
        return None
    count = -(-head.in_features // OUTLIER_SHARE // 8) * 8
    try:
        hidden = calibration_hidden(model)
        screened = ScreenedHead(head, outlier_dims(hidden, count))
        sound = screened.bound_holds(hidden)
    except (RuntimeError, AttributeError, NotImplementedError) as e:  # no quantized CPU backend in this torch build
        log.warning("LM head screen not installed (%s: %s); every pass uses the full fp32 head", type(e).__name__, e)
        return None
    if not sound:  # this torch's dynamic quantization is not the scheme the bound assumes: exactness not guaranteed
        log.warning("LM head screen not installed: its error bound failed on the calibration pass")
        return None
    model.set_output_embeddings(screened)
    return screened
