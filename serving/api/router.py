"""Routing between models listed cheapest first: a confidence cascade and a learned prompt classifier, with thresholds
calibrated from a budget on a calibration set, and the cost–quality curve with APGR.

Quality of one answer is measured against a reference: the bits per UTF-8 byte of the request's reference
continuation under the model that answered (lower is better). Over a set, quality is ``Q = total bytes / total bits``
(bytes per bit, higher is better), so "Y% of the large model's quality" means ``Q_routed >= Y * Q_large``, i.e.
``bpb_routed <= bpb_large / Y``. PGR (performance gap recovered) is ``(Q_routed - Q_small) / (Q_large - Q_small)``;
APGR is its average over the share of calls sent past the cheapest model, from 0 to 1 (RouteLLM); a random router
scores 0.5.

Scores are "how sure the cheap model may answer" (higher = keep it): the cascade's score is the cheap model's own
confidence over its first ``preview_tokens`` (mean token log-prob, minus mean entropy, or min log-prob); the learned
router's score is a logistic regression's probability that the cheap model's answer is nearly as good, from prompt
features (size, character classes, the cheap model's bits per byte on the prompt). A request escalates when
``score < threshold``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from serving.api.backend import Backend, Generation, GenParams, Step, bits_per_byte
from serving.api.cost_router import LanguageGuess, choose, served_table

ROUTER_NAMES = ("cascade", "learned", "cost", "price")  # cost = cost per request, price = price per token
_ROUTER_RE = re.compile(r"^router-(cascade|learned|cost|price)(?:-(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?))?$")
CONFIDENCES = ("mean_logprob", "neg_entropy", "min_logprob")


class RouterNameError(ValueError):
    """A ``model`` naming a router that does not exist or has an unreadable threshold."""


def parse_router_model(model: str) -> tuple[str, float | None] | None:
    """``router-cascade--1.5`` -> ("cascade", -1.5); ``router-learned`` -> ("learned", None); other names -> None.

    For ``router-cost`` / ``router-price`` the number is the quality floor (share of the largest model's quality).
    """
    if not model.startswith("router-"):
        return None
    m = _ROUTER_RE.match(model)
    if not m:
        raise RouterNameError(
            f"unknown router {model!r}; use router-<name>[-<threshold>] with name in {list(ROUTER_NAMES)}, "
            "e.g. router-cascade--1.5 or router-learned-0.4"
        )
    return m.group(1), float(m.group(2)) if m.group(2) is not None else None


def confidence(steps: Sequence[Step], kind: str = "mean_logprob") -> float:
    """The cheap model's confidence in its own tokens (higher = more confident)."""
    if not steps:
        return 0.0
    if kind == "mean_logprob":
        return float(np.mean([s.logprob for s in steps]))
    if kind == "neg_entropy":
        return -float(np.mean([s.entropy for s in steps]))
    if kind == "min_logprob":
        return float(min(s.logprob for s in steps))
    raise ValueError(f"unknown confidence {kind!r}; expected one of {CONFIDENCES}")


# ---- prompt features and the learned router -------------------------------------------------------------------------

FEATURES = ("log_bytes", "non_ascii", "digits", "punct", "space", "newlines", "word_len", "prompt_bpb")


def prompt_features(prompt: str, prompt_bpb: float) -> list[float]:
    """Numbers the learned router sees: size, character classes and the cheap model's bits per byte on the prompt."""
    n = max(len(prompt), 1)
    words = prompt.split()
    return [
        math.log1p(len(prompt.encode("utf-8"))),
        sum(ord(c) > 127 for c in prompt) / n,
        sum(c.isdigit() for c in prompt) / n,
        sum((not c.isalnum()) and not c.isspace() for c in prompt) / n,
        sum(c.isspace() for c in prompt) / n,
        prompt.count("\n") / n,
        float(np.mean([len(w) for w in words])) if words else 0.0,
        prompt_bpb,
    ]


@dataclass
class LogisticModel:
    """Standardised logistic regression, fitted with L2-regularised gradient descent (numpy only)."""

    mean: list[float]
    std: list[float]
    weights: list[float]
    bias: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 2000, lr: float = 0.5) -> LogisticModel:
        mean, std = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / std
        w, b = np.zeros(z.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ w + b)))
            w -= lr * (z.T @ (p - y) / len(y) + l2 * w)
            b -= lr * float(np.mean(p - y))
        return cls(mean.tolist(), std.tolist(), w.tolist(), b)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - np.array(self.mean)) / np.array(self.std)
        return 1 / (1 + np.exp(-(z @ np.array(self.weights) + self.bias)))


def learned_labels(bits_small: np.ndarray, bits_large: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """1 where the cheap model is nearly as good: its bpb gap to the large model is below the median gap."""
    gap = (bits_small - bits_large) / n_bytes
    return (gap <= np.median(gap)).astype(float)


def fit_learned(records: list[dict], folds: int = 5, seed: int = 0) -> tuple[LogisticModel, np.ndarray]:
    """Fit on all records; also return out-of-fold scores (for calibrating the threshold without in-sample bias)."""
    x = np.array([r["features"] for r in records])
    bits = np.array([r["bits"] for r in records])
    y = learned_labels(bits[:, 0], bits[:, -1], np.array([r["n_bytes"] for r in records], float))
    order = np.random.default_rng(seed).permutation(len(records))
    oof = np.zeros(len(records))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        if len(set(y[train])) < 2:
            oof[test] = float(np.mean(y[train]))
            continue
        oof[test] = LogisticModel.fit(x[train], y[train]).predict(x[test])
    return LogisticModel.fit(x, y), oof


# ---- simulation, calibration and the cost–quality curve -------------------------------------------------------------


def answered_by(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the answering model per request: the first whose score >= threshold, else the last.

    ``scores``: [n, M-1] confidence of each non-final model in the chain (cheapest first).
    """
    ok = scores >= threshold  # [n, M-1]
    ok = np.concatenate([ok, np.ones((len(scores), 1), bool)], 1)
    return ok.argmax(1)


@dataclass
class Point:
    """One threshold's outcome on a set of requests."""

    threshold: float
    escalation_rate: float  # share of requests answered past the cheapest model
    large_call_rate: float  # share answered by the most expensive model
    quality: float  # bytes per bit of references under the answering models
    quality_share: float  # quality / quality of always-large
    pgr: float
    cost_usd: float
    bpb: float


def evaluate(
    records: list[dict], scores: np.ndarray, threshold: float, prices: Sequence[tuple[float, float]]
) -> Point:
    """Outcome of routing ``records`` with per-request ``scores`` [n, M-1] at ``threshold``."""
    bits = np.array([r["bits"] for r in records])  # [n, M]
    n_bytes = np.array([r["n_bytes"] for r in records], float)
    idx = answered_by(scores, threshold)
    m = bits.shape[1]
    q = n_bytes.sum() / bits[np.arange(len(idx)), idx].sum()
    q_small, q_large = n_bytes.sum() / bits[:, 0].sum(), n_bytes.sum() / bits[:, -1].sum()
    gap = q_large - q_small
    return Point(
        threshold=float(threshold),
        escalation_rate=float(np.mean(idx > 0)),
        large_call_rate=float(np.mean(idx == m - 1)),
        quality=float(q),
        quality_share=float(q / q_large),
        pgr=float((q - q_small) / gap) if abs(gap) > 1e-12 else 1.0,
        cost_usd=float(_cost_matrix(records, prices)[np.arange(len(idx)), idx].sum()),
        bpb=float(1 / q),
    )


def _cost_matrix(records: list[dict], prices: Sequence[tuple[float, float]]) -> np.ndarray:
    """[n, M] USD per request if model m answers: every model tried before pays its prompt and preview tokens."""
    p_in, p_out = np.array(prices, float).T  # [M]
    prompt = np.array([r["prompt_tokens"] for r in records], float)  # [n, M]
    preview = np.array([r["preview_tokens"] for r in records], float)[:, None]
    answer = np.array([r["answer_tokens"] for r in records], float)[:, None]
    tried = (prompt * p_in + preview * p_out) / 1e6  # cost of a model that passes the request on
    answered = (prompt * p_in + answer * p_out) / 1e6
    before = np.concatenate([np.zeros((len(records), 1)), np.cumsum(tried, 1)[:, :-1]], 1)
    return before + answered


def candidate_thresholds(scores: np.ndarray) -> list[float]:
    """Midpoints between distinct scores plus one below all (never escalate) and one above all (always escalate)."""
    u = np.unique(scores)
    if len(u) == 0:
        return [0.0]
    mids = ((u[1:] + u[:-1]) / 2).tolist()
    return [float(u[0] - 1.0), *mids, float(u[-1] + 1.0)]


def curve(records: list[dict], scores: np.ndarray, prices: Sequence[tuple[float, float]]) -> list[Point]:
    """The cost–quality curve: one point per distinct threshold, fewest escalations first."""
    pts = [evaluate(records, scores, t, prices) for t in candidate_thresholds(scores)]
    return sorted(pts, key=lambda p: (p.escalation_rate, -p.threshold))


def apgr(points: list[Point]) -> float:
    """Average PGR over the share of calls sent past the cheapest model (trapezoid area of PGR vs that share)."""
    xs = np.array([0.0] + [p.escalation_rate for p in points] + [1.0])
    ys = np.array([points[0].pgr] + [p.pgr for p in points] + [points[-1].pgr])
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


@dataclass
class Calibration:
    """A threshold chosen for a budget and what it achieved on the calibration set."""

    router: str
    threshold: float
    budget_max_escalation: float | None
    budget_min_quality: float | None
    met: bool
    point: Point
    extra: dict[str, Any] = field(default_factory=dict)


def calibrate(
    records: list[dict],
    scores: np.ndarray,
    prices: Sequence[tuple[float, float]],
    router: str = "cascade",
    max_escalation: float | None = None,
    min_quality: float | None = 0.95,
) -> Calibration:
    """Pick the threshold that meets the budget on ``records``.

    ``max_escalation``: at most this share of requests escalate (the best quality within it is chosen).
    ``min_quality``: at least this share of the large model's quality with the fewest escalations.
    Both: the fewest escalations meeting the quality within the escalation cap; if none does, the best quality within
    the cap, with ``met=False``.
    """
    if max_escalation is None and min_quality is None:
        raise ValueError("give a budget: max_escalation (share of requests) and/or min_quality (share of quality)")
    pts = curve(records, scores, prices)
    within = [p for p in pts if max_escalation is None or p.escalation_rate <= max_escalation + 1e-12]
    best_within = max(within or pts[:1], key=lambda p: (p.quality, -p.escalation_rate))
    if min_quality is None:
        return Calibration(router, best_within.threshold, max_escalation, None, bool(within), best_within)
    good = [p for p in within if p.quality_share >= min_quality - 1e-12]
    best = min(good, key=lambda p: (p.escalation_rate, p.cost_usd, -p.quality)) if good else best_within
    return Calibration(router, best.threshold, max_escalation, min_quality, bool(good), best)


# ---- collecting calibration records from real models ----------------------------------------------------------------


def collect_records(
    chain: Sequence[Backend],
    samples: Sequence[tuple[str, ...]],
    preview_tokens: int = 8,
    answer_tokens: int = 32,
) -> list[dict]:
    """Run every model on every (prompt, reference[, language, domain]) sample: confidence of its greedy preview
    under each score kind, bits of the reference continuation, prompt and reference tokens (each model's own
    tokenizer) and the cheap model's prompt features. ``preview_tokens=-1`` skips the preview (cost routing needs
    only tokens and bits).

    The prompt keeps its last and the reference its first ``max_context // 2`` tokens of each model; the reference's
    bytes are those of the tokens kept by every model, so bits per byte stay comparable across tokenizers.
    """
    out = []
    for i, (prompt, reference, *labels) in enumerate(samples):
        reference = _common_reference(chain, reference)
        rec: dict[str, Any] = {"i": i, "n_bytes": len(reference.encode("utf-8")), "bits": [], "prompt_tokens": []}
        rec.update(preview_tokens=preview_tokens, answer_tokens=answer_tokens, scores={k: [] for k in CONFIDENCES})
        rec.update(reference_tokens=[], language=labels[0] if labels else None, domain=labels[1] if labels else None)
        for b in chain:
            ids = b.encode(prompt)[-(b.max_context // 2) :]
            ref = b.encode(reference)
            rec["prompt_tokens"].append(len(ids))
            rec["reference_tokens"].append(len(ref))
            rec["bits"].append(-b.logprob_sum(ids, ref) / math.log(2))  # each model's own tokens and log-probs
            if preview_tokens < 0:
                continue
            steps = list(b.generate(ids, GenParams(max_tokens=preview_tokens or answer_tokens)))
            for k in CONFIDENCES:
                rec["scores"][k].append(confidence(steps, k))
        rec["features"] = prompt_features(prompt, _prompt_bpb(chain[0], prompt))
        out.append(rec)
    return out


def _common_reference(chain: Sequence[Backend], reference: str) -> str:
    """The reference cut to what every model's half context holds (a text, so every model scores the same bytes)."""
    for b in chain:
        ids = b.encode(reference)
        if len(ids) > b.max_context // 2:
            reference = b.decode(ids[: b.max_context // 2])
            reference = reference.rstrip("\ufffd")
    return reference


def _prompt_bpb(b: Backend, prompt: str) -> float:
    ids = b.encode(prompt)[-b.max_context :]
    if len(ids) < 2:
        return 0.0
    return bits_per_byte(b.logprob_sum(ids[:1], ids[1:]), len(b.decode(ids[1:]).encode("utf-8")))


def cascade_scores(records: list[dict], kind: str = "mean_logprob") -> np.ndarray:
    """[n, M-1] cascade scores of the non-final models."""
    return np.array([r["scores"][kind][:-1] for r in records]).reshape(len(records), -1)


def learned_scores(records: list[dict], model: LogisticModel, n_models: int) -> np.ndarray:
    """[n, M-1]: the learned router decides cheapest vs largest, so middle models never answer (score -inf)."""
    p = model.predict(np.array([r["features"] for r in records]))
    s = np.full((len(records), n_models - 1), -np.inf)
    s[:, 0] = p
    return s


# ---- routing live requests ------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """A model that was tried and passed the request on (its tokens are paid for)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    score: float


@dataclass
class Routed:
    """A routed request in flight: the answering model's generation, the tokens it already produced (preview) and the
    routing record."""

    model: str
    prompt_ids: list[int]
    generation: Generation
    prefix: list[Step]
    router: str | None = None
    threshold: float | None = None
    score: float | None = None
    candidates: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    prompt_text: str | None = None  # the prompt as the answering model read it (its own chat template)
    reason: str | None = None  # why this model answers (cost routers: predicted cost and quality of each candidate)
    predictions: list[dict] = field(default_factory=list)
    language: str | None = None
    domain: str | None = None
    fallback: bool = False  # the request's language was never calibrated: the largest model answers


def direct(name: str, backend: Backend, prompt_ids: list[int], params: GenParams) -> Routed:
    """No routing: the named model answers."""
    return Routed(name, prompt_ids, backend.generate(prompt_ids, params), [], candidates=[name])


Prompt = str | list[dict[str, str]]  # text, or chat messages that each model renders with its own chat template


def prompt_text(backend: Backend, prompt: Prompt) -> str:
    """The prompt as ``backend`` reads it: chat messages through its own chat template (models differ)."""
    return prompt if isinstance(prompt, str) else backend.chat_prompt(prompt)


@dataclass
class CascadeRouter:
    """Answer with the cheapest model; escalate to the next when its confidence over a preview is below threshold."""

    chain: list[str]
    threshold: float
    confidence: str = "mean_logprob"
    preview_tokens: int = 8
    name: str = "cascade"

    def start(self, backends: dict[str, Backend], prompt: Prompt, params: GenParams, max_prompt: int,
              **hints: str | None) -> Routed:  # fmt: skip
        """Each model reads the prompt in its own tokenizer (and chat template); its confidence is over its own
        tokens' log-probs."""
        attempts: list[Attempt] = []
        for i, name in enumerate(self.chain):
            b = backends[name]
            text = prompt_text(b, prompt)
            ids = _fit_prompt(b.encode(text), max_prompt)
            last = i == len(self.chain) - 1
            gen = b.generate(ids, params if last else replace(params, scores=True))  # a preview reads log-probs
            if last:
                score = attempts[-1].score if attempts else None
                return Routed(name, ids, gen, [], self.name, self.threshold, score, list(self.chain), attempts, text)
            n = min(self.preview_tokens or params.max_tokens, params.max_tokens)
            prefix = _take(gen, n)
            score = confidence(prefix, self.confidence)
            if score >= self.threshold:
                return Routed(name, ids, gen, prefix, self.name, self.threshold, score, list(self.chain), attempts,
                              text)  # fmt: skip
            gen.close()
            attempts.append(Attempt(name, len(ids), len(prefix), score))
        raise AssertionError("unreachable: the last model always answers")


@dataclass
class LearnedRouter:
    """Send the prompt to the cheapest model when the classifier's score >= threshold, else to the largest."""

    chain: list[str]
    threshold: float
    model: LogisticModel
    name: str = "learned"

    def score(self, backends: dict[str, Backend], prompt: str) -> float:
        feats = prompt_features(prompt, _prompt_bpb(backends[self.chain[0]], prompt))
        return float(self.model.predict(np.array(feats))[0])

    def start(self, backends: dict[str, Backend], prompt: Prompt, params: GenParams, max_prompt: int,
              **hints: str | None) -> Routed:  # fmt: skip
        s = self.score(backends, prompt_text(backends[self.chain[0]], prompt))  # the cheap model's own bpb
        name = self.chain[0] if s >= self.threshold else self.chain[-1]
        b = backends[name]
        text = prompt_text(b, prompt)
        ids = _fit_prompt(b.encode(text), max_prompt)
        return Routed(name, ids, b.generate(ids, params), [], self.name, self.threshold, s, list(self.chain), [],
                      text)  # fmt: skip


@dataclass
class CostRouter:
    """Route each request to the cheapest model (by predicted cost per request, or by price per token) whose
    calibrated quality for the request's language and domain meets the floor (:mod:`serving.api.cost_router`)."""

    chain: list[str]
    table: dict
    threshold: float  # the quality floor: share of the largest model's quality
    mode: str = "per_request"
    name: str = "cost"
    guess: Any = None  # LanguageGuess, loaded on the first request that does not say its language

    def start(self, backends: dict[str, Backend], prompt: Prompt, params: GenParams, max_prompt: int,
              language: str | None = None, domain: str | None = None) -> Routed:  # fmt: skip
        """Every candidate's exact prompt tokens (its own chat template and tokenizer), then one model answers."""
        texts = {n: prompt_text(backends[n], prompt) for n in self.chain}
        ids = {n: backends[n].encode(t) for n, t in texts.items()}
        if not language:
            self.guess = self.guess or LanguageGuess()
            language = self.guess(texts[self.chain[-1]])
        d = choose(self.table, {n: len(i) for n, i in ids.items()}, language, domain, self.threshold,
                   params.max_tokens, self.mode)  # fmt: skip
        b = backends[d.model]
        fit = _fit_prompt(ids[d.model], max_prompt)
        preds = [asdict(c) for c in d.candidates]
        return Routed(d.model, fit, b.generate(fit, params), [], self.name, self.threshold, None, list(self.chain),
                      [], texts[d.model], d.reason, preds, d.language, domain, d.fallback)  # fmt: skip


def _take(gen: Generation, n: int) -> list[Step]:
    out = []
    for step in gen:
        out.append(step)
        if len(out) >= n:
            break
    return out


def _fit_prompt(ids: list[int], max_prompt: int) -> list[int]:
    if len(ids) > max_prompt:
        raise PromptTooLong(len(ids), max_prompt)
    return ids or [0]


class PromptTooLong(ValueError):
    """A prompt longer than the serving limit for the model that would read it."""

    def __init__(self, n: int, limit: int):
        super().__init__(f"prompt has {n} tokens; the limit is {limit}. Shorten the prompt.")
        self.n, self.limit = n, limit


def router_from_calibration(
    kind: str, chain: list[str], calib: dict | None, threshold: float | None, confidence_kind: str, preview: int,
    models: dict[str, tuple[str, tuple[float, float]]] | None = None,
) -> CascadeRouter | LearnedRouter | CostRouter:  # fmt: skip
    """Build a router from the calibration JSON (``serve calibrate``) and/or an explicit threshold.

    ``models`` (name -> (path, (input, output) price per 1M)) lets the cost routers find the calibration of a served
    model under another name (same weights dir) and price it as served.
    """
    if kind in ("cost", "price"):
        return cost_router_from_calibration(kind, chain, calib, threshold, models or {})
    entry = (calib or {}).get(kind) or {}
    t = threshold if threshold is not None else entry.get("threshold")
    if kind == "cascade":
        conf = entry.get("confidence", confidence_kind)
        prev = entry.get("preview_tokens", preview)
        return CascadeRouter(chain, t if t is not None else -math.inf, conf, prev)
    if "model" not in entry:
        raise RouterNameError("the learned router has not been trained; run `tokenwise serve calibrate` first")
    return LearnedRouter(chain, t if t is not None else 0.5, LogisticModel(**entry["model"]))


def cost_router_from_calibration(
    kind: str, chain: list[str], calib: dict | None, floor: float | None,
    models: dict[str, tuple[str, tuple[float, float]]],
) -> CostRouter:  # fmt: skip
    """The cost-per-request (``cost``) or price-per-token (``price``) router over the served ``chain``."""
    entry = (calib or {}).get("cost") or {}
    if "table" not in entry:
        raise RouterNameError("the cost routers are not calibrated; run `tokenwise serve calibrate` first")
    mode = "per_request" if kind == "cost" else "per_token"
    table = served_table(entry["table"], chain, models)
    f = floor if floor is not None else entry["floors"][mode]["floor"]
    return CostRouter([n for n in chain if n in table["models"]], table, f, mode, name=kind)


# ---- comparing strategies (bench/route.py, bench/serve.py) ----------------------------------------------------------


def strategy_scores(cal: list[dict], test: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per strategy, (scores on the calibration half, scores on the test half), each [n, 1].

    Cascade scores for every confidence kind; the learned router fitted on ``cal`` (out-of-fold scores there);
    random and oracle (the true per-request gap) as the lower and upper references.
    """
    out = {f"cascade_{k}": (cascade_scores(cal, k), cascade_scores(test, k)) for k in CONFIDENCES}
    model, oof = fit_learned(cal)
    out["learned"] = (oof[:, None], model.predict(np.array([r["features"] for r in test]))[:, None])
    rng = np.random.default_rng(0)
    out["random"] = (rng.random((len(cal), 1)), rng.random((len(test), 1)))

    def gap(rs: list[dict]) -> np.ndarray:
        return -np.array([(r["bits"][0] - r["bits"][-1]) / r["n_bytes"] for r in rs])[:, None]

    out["oracle"] = (gap(cal), gap(test))
    return out


def small_share_at_floor(points: list[Point], floor: float) -> float:
    """Largest share answered by the cheapest model with quality >= floor x the large model's (on one curve)."""
    ok = [1 - p.escalation_rate for p in points if p.quality_share >= floor - 1e-12]
    return max(ok) if ok else 0.0


def cost_quality(
    records: list[dict],
    prices: Sequence[tuple[float, float]],
    floor: float = 0.95,
    calib_share: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """The routing section of a benchmark: calibrate each strategy on a random ``calib_share`` of ``records`` for
    ``floor`` of the large model's quality, evaluate on the rest; curves, APGR, cost vs always-large.

    ``records`` come from :func:`collect_records` (two models, cheapest first); ``prices``: (input, output) USD per
    1M tokens per model.
    """
    order = np.random.default_rng(seed).permutation(len(records))  # i.i.d. halves: requests arrive in source order
    half = max(2, int(len(records) * calib_share))
    cal, test = [records[i] for i in order[:half]], [records[i] for i in order[half:]]
    n = len(test)
    small = evaluate(test, np.full((n, 1), np.inf), 0.0, prices)
    large = evaluate(test, np.full((n, 1), -np.inf), 0.0, prices)
    out: dict[str, Any] = {
        "requests": {"calibration": len(cal), "test": n},
        "quality_floor": floor,
        "baselines": {"always_small": asdict(small), "always_large": asdict(large)},
        "strategies": {},
    }
    for name, (s_cal, s_test) in strategy_scores(cal, test).items():
        c = calibrate(cal, s_cal, prices, name, max_escalation=None, min_quality=floor)
        on_test = evaluate(test, s_test, c.threshold, prices)
        pts = curve(test, s_test, prices)
        out["strategies"][name] = {
            "apgr": apgr(pts),
            "small_share_at_floor": small_share_at_floor(pts, floor),
            "threshold": c.threshold,
            "met_on_calibration": c.met,
            "calibration": asdict(c.point),
            "test": asdict(on_test),
            "cost_ratio_vs_always_large": on_test.cost_usd / large.cost_usd if large.cost_usd else None,
            "curve": [asdict(p) for p in pts],
        }
    return out
