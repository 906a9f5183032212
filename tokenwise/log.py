"""Structured log lines and progress bars (rich), quiet when not on a terminal or under CI."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import track as rich_track

T = TypeVar("T")

# the project's top-level packages: their module loggers (logging.getLogger(__name__)) are what configure() sets up
# and what a Prefect flow forwards to its run logs
LIBRARY_LOGGERS = ("tokenwise", "curation", "finetune", "serving", "report", "flows")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | None = None) -> None:
    """Send the project's log lines to stderr (``time level module: message key=value``); call once, from a main.

    ``level`` defaults to ``TOKENWISE_LOG_LEVEL`` (INFO). Library modules only create loggers; nothing is configured
    at import, so an embedding application keeps control of logging.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_tokenwise", False)]
        handler._tokenwise = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(level or os.environ.get("TOKENWISE_LOG_LEVEL", "INFO"))
        logger.propagate = False


def kv(**fields: object) -> str:
    """Format key=value pairs for a structured log line."""
    return " ".join(f"{k}={v}" for k, v in fields.items())


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal outside CI."""
    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TOKENWISE_PROGRESS", "1") != "0"


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar when enabled, silently otherwise."""
    if not progress_enabled():
        yield from items
        return

    yield from rich_track(items, description=description, total=total, transient=True)
