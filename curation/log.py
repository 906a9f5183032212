"""Structured log lines and progress bars (rich), quiet when not on a terminal or under CI."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_CONFIGURED = False


def get_logger(name: str) -> logging.Logger:
    """A logger writing ``time level stage: message key=value`` lines to stderr."""
    global _CONFIGURED
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root = logging.getLogger("tokenwise")
        root.addHandler(handler)
        root.setLevel(os.environ.get("TOKENWISE_LOG_LEVEL", "INFO"))
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(f"tokenwise.{name}")


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
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)
