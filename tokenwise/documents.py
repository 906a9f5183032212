"""The document schema shared by every stage, and the quarantine record for input that could not be read.

A **document** is ``id, text, source, lang?, domain?, unit_id?``. Documents sharing a ``unit_id`` say the same thing in
different languages (parallel text): the unit is the *semantic unit* that TPSU and premiums are measured on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

CORPUS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("lang", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("unit_id", pa.string()),
    ]
)
CORPUS_COLUMNS = tuple(CORPUS_SCHEMA.names)


@dataclass(slots=True)
class Document:
    """One document; ``metadata`` holds scorer outputs and anything a reader could not map to a column."""

    id: str
    text: str
    source: str
    lang: str | None = None
    domain: str | None = None
    unit_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The document as a corpus-schema row (metadata dropped)."""
        return {k: getattr(self, k) for k in CORPUS_COLUMNS}


@dataclass(slots=True)
class Quarantined:
    """A record that could not become a document: where it was and why."""

    file: str
    line: int | None
    offset: int | None
    reason: str
    detail: str = ""
    snippet: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}{': ' + self.detail if self.detail else ''}"
