"""Deterministic held-out split: a document is held out when its unit (or id) hashes below a fraction.

Splitting by ``unit_id`` keeps every translation of a held-out unit out of training, so no stage sees a held-out
sentence in any language. Every stage that trains (quality classifier, tokenizers, models) skips held-out documents;
evaluation and measurement use only them.
"""

from __future__ import annotations

import hashlib

HELDOUT_FRACTION = 0.1


def split_key(doc_id: str, unit_id: str | None) -> str:
    """The key a document is split by: its unit when it has one, else its id."""
    return unit_id or doc_id


def split_position(doc_id: str, unit_id: str | None = None) -> float:
    """Where the document's unit (or id) hashes in [0, 1): the same for every translation of a unit."""
    h = hashlib.blake2b(split_key(doc_id, unit_id).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def is_heldout(doc_id: str, unit_id: str | None = None, fraction: float = HELDOUT_FRACTION) -> bool:
    """True when the document belongs to the held-out split (stable across runs and machines)."""
    return split_position(doc_id, unit_id) < fraction
