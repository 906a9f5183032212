"""A DCLM-style fastText quality classifier: trained on a positive and a negative set, scored per document.

DCLM trains a bigram fastText classifier with "high quality" reference text as positives (OpenHermes/ELI5) and random
web text as negatives. Offline we cannot fetch those, so the demo's choice (configs/demo.yaml ``quality:``) is honest
about what the classifier learns:
- positive = curated documentation prose found on the machine: Python stdlib docstrings (written and reviewed by
  people, explanatory English) and package READMEs under /usr/share/doc;
- negative = text nobody would want a model to imitate: Debian changelogs (terse machine-formatted entries),
  copyright/license boilerplate, and the dpkg status database (machine-generated package records).
It therefore measures "reads like explanatory documentation" versus "boilerplate / logs / generated records", not
general web quality; swap the sets in config for another notion of quality.

``tokenwise quality train`` writes ``<run>/models/quality/model.bin`` and ``metrics.json`` (precision/recall/F1 of the
positive class on a held-out split chosen by :func:`tokenwise.splits.is_heldout`).
"""

from __future__ import annotations

import ast
import glob
import gzip
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from tokenwise.config import BaseConfig, load_section
from tokenwise.log import kv
from tokenwise.pysource import parse_python
from tokenwise.rundir import RunDir, hash_obj, write_json
from tokenwise.splits import is_heldout

log = logging.getLogger(__name__)
POSITIVE, NEGATIVE = "__label__hq", "__label__lq"
_WS = re.compile(r"\s+")
_PARA = re.compile(r"\n\s*\n")


class TextSet(BaseConfig):
    """Files matched by a glob and how to cut them into training documents."""

    glob: str = Field(..., description="Glob of local files (``**`` allowed); ``.gz`` files are decompressed.")
    extract: Literal["file", "paragraphs", "docstrings"] = Field(
        "paragraphs",
        description="file: whole file; paragraphs: blank-line separated blocks merged to min_chars; "
        "docstrings: module/class/function docstrings of Python files.",
    )


def train_fasttext(lr: float, attempts: int = 4, **kwargs: object) -> object:
    """``fasttext.train_supervised`` (one thread, quiet); on fastText's "Encountered NaN" retry at half the lr."""
    import fasttext  # heavy: deferred until used

    for i in range(attempts):
        try:
            return fasttext.train_supervised(lr=lr, thread=1, verbose=0, **kwargs)
        except RuntimeError as e:
            if "NaN" not in str(e) or i == attempts - 1:
                raise RuntimeError(f"fastText training diverged at lr={lr}: {e}; lower quality.lr") from e
            log.warning(kv(event="fasttext_nan", lr=lr, retry_lr=lr / 2))
            lr /= 2
    raise AssertionError("unreachable")


class QualityConfig(BaseConfig):
    """Training of the quality classifier (``tokenwise quality train``)."""

    positive: list[TextSet] = Field(default_factory=list, description="Text the classifier should score high.")
    negative: list[TextSet] = Field(default_factory=list, description="Text the classifier should score low.")
    min_chars: int = Field(200, ge=1, description="Shortest training document; shorter pieces are merged or dropped.")
    max_docs_per_set: int = Field(3000, ge=10, description="Cap per side (positive/negative); balances the classes.")
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of documents held out for precision/recall.")
    epoch: int = Field(10, ge=1, le=200, description="fastText epochs; more fits the training set harder.")
    lr: float = Field(0.5, gt=0, le=5, description="fastText learning rate.")
    word_ngrams: int = Field(2, ge=1, le=5, description="fastText wordNgrams (DCLM uses bigrams).")
    dim: int = Field(64, ge=8, le=300, description="Embedding size; larger is slower and rarely better here.")
    seed: int = 0


def normalize(text: str) -> str:
    """fastText input: lowercase, one line, single spaces."""
    return _WS.sub(" ", text.lower()).strip()


def _read(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def _paragraphs(text: str, min_chars: int) -> Iterator[str]:
    buf = ""
    for para in _PARA.split(text):
        buf = f"{buf}\n\n{para}" if buf else para
        if len(buf) >= min_chars:
            yield buf
            buf = ""


def _docstrings(text: str) -> Iterator[str]:
    try:
        tree = parse_python(text)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                yield doc


def iter_set(spec: TextSet, min_chars: int) -> Iterator[tuple[str, str]]:
    """(doc id, text) pairs of one text set, in sorted file order."""
    for path in sorted(glob.glob(spec.glob, recursive=True)):
        if not Path(path).is_file():
            continue
        try:
            text = _read(path)
        except OSError as e:
            log.warning("skipping unreadable file %s", kv(path=path, error=e))
            continue
        if spec.extract == "file":
            pieces = [text]
        elif spec.extract == "docstrings":
            pieces = list(_docstrings(text))
        else:
            pieces = list(_paragraphs(text, min_chars))
        for i, piece in enumerate(pieces):
            if len(piece) >= min_chars or spec.extract == "docstrings" and len(piece) >= min_chars // 2:
                yield f"{path}#{i}", piece


def collect(sets: list[TextSet], cfg: QualityConfig) -> list[tuple[str, str]]:
    """Documents of one side, deduplicated by text, capped at ``max_docs_per_set`` (evenly strided)."""
    docs = {}
    for spec in sets:
        for doc_id, text in iter_set(spec, cfg.min_chars):
            docs.setdefault(normalize(text), doc_id)
    items = [(i, t) for t, i in docs.items()]
    step = max(1, len(items) // cfg.max_docs_per_set)
    return items[::step][: cfg.max_docs_per_set]


def _prf(labels: list[str], preds: list[str]) -> dict[str, float]:
    tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == POSITIVE and p == POSITIVE)
    fp = sum(1 for y, p in zip(labels, preds, strict=True) if y == NEGATIVE and p == POSITIVE)
    fn = sum(1 for y, p in zip(labels, preds, strict=True) if y == POSITIVE and p == NEGATIVE)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    acc = sum(1 for y, p in zip(labels, preds, strict=True) if y == p) / len(labels) if labels else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": acc}


def train(cfg: QualityConfig, out_dir: str | Path) -> dict:
    """Train on the configured sets, evaluate on the held-out split, save ``model.bin`` + ``metrics.json``."""
    if not cfg.positive or not cfg.negative:
        raise ValueError("quality: both `positive` and `negative` need at least one {glob, extract} entry")
    pos, neg = collect(cfg.positive, cfg), collect(cfg.negative, cfg)
    if len(pos) < 10 or len(neg) < 10:
        raise ValueError(
            f"quality: too few documents (positive={len(pos)}, negative={len(neg)}); check the globs in config "
            "or lower min_chars"
        )
    rows = [(POSITIVE, i, t) for i, t in pos] + [(NEGATIVE, i, t) for i, t in neg]
    train_rows = [r for r in rows if not is_heldout(r[1], fraction=cfg.heldout_fraction)]
    test_rows = [r for r in rows if is_heldout(r[1], fraction=cfg.heldout_fraction)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out, delete=False, encoding="utf-8") as f:
        f.writelines(f"{label} {normalize(text)}\n" for label, _, text in train_rows)
        train_file = f.name
    try:
        model = train_fasttext(
            input=train_file, epoch=cfg.epoch, lr=cfg.lr, wordNgrams=cfg.word_ngrams, dim=cfg.dim, seed=cfg.seed
        )
    finally:
        Path(train_file).unlink(missing_ok=True)
    preds = [labs[0] for labs in model.predict([normalize(t) for _, _, t in test_rows], k=1)[0]]
    metrics = {
        "heldout": _prf([r[0] for r in test_rows], preds),
        "n_train": {
            "positive": sum(r[0] == POSITIVE for r in train_rows),
            "negative": sum(r[0] == NEGATIVE for r in train_rows),
        },
        "n_heldout": {
            "positive": sum(r[0] == POSITIVE for r in test_rows),
            "negative": sum(r[0] == NEGATIVE for r in test_rows),
        },
        "positive_sets": [s.model_dump() for s in cfg.positive],
        "negative_sets": [s.model_dump() for s in cfg.negative],
        "config": cfg.model_dump(),
    }
    tmp = out / ".model.bin.tmp"
    model.save_model(str(tmp))
    tmp.replace(out / "model.bin")
    write_json(out / "metrics.json", metrics)
    return metrics


class QualityScorer:
    """P(positive) per text from a trained quality model."""

    def __init__(self, model_path: str | Path):
        import fasttext  # heavy: deferred until used

        fasttext.FastText.eprint = lambda *a, **k: None
        self.model = fasttext.load_model(str(model_path))

    def score(self, texts: list[str]) -> list[float]:
        labels, probs = self.model.predict([normalize(t) for t in texts], k=2)
        out = []
        for labs, ps in zip(labels, probs, strict=True):
            d = dict(zip(labs, ps, strict=True))
            out.append(float(min(1.0, d.get(POSITIVE, 0.0))))
        return out


def model_path(run_dir: str) -> Path:
    """Where the run's quality model lives."""
    return Path(run_dir) / "models" / "quality" / "model.bin"


def train_from_config(config_path: str, run_dir: str) -> str:
    """Demo/CLI stage: train the classifier unless the same config already trained it; one-line summary."""
    cfg = load_section(config_path, "quality", QualityConfig)
    run = RunDir(run_dir)
    out = run.stage("models", "quality")
    h = hash_obj({"config": cfg.model_dump(), "files": _inputs_fingerprint(cfg)})
    if run.is_done("models/quality", h) and model_path(run_dir).is_file():
        m = run.marker("models/quality")["summary"]
        return f"quality model up to date at {out} (held-out precision {m['precision']:.3f}, recall {m['recall']:.3f})"
    metrics = train(cfg, out)
    run.mark_done("models/quality", h, metrics["heldout"])
    hm = metrics["heldout"]
    log.info("trained %s", kv(out=out, **hm))
    return (
        f"quality model -> {out}/model.bin; held-out precision {hm['precision']:.3f} recall {hm['recall']:.3f} "
        f"({sum(metrics['n_train'].values())} train / {sum(metrics['n_heldout'].values())} held-out docs)"
    )


def _inputs_fingerprint(cfg: QualityConfig) -> list:
    files = []
    for spec in cfg.positive + cfg.negative:
        for p in sorted(glob.glob(spec.glob, recursive=True)):
            st = Path(p).stat()
            files.append((p, st.st_size, int(st.st_mtime)))
    return files
