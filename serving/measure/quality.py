"""Per-request quality: chrF (character n-gram F-score, Popović 2015) of the completion against the reference
continuation, and bits per byte of the reference under the answering model when the server scores it.

chrF works on characters, so it compares outputs from models with different tokenizers fairly and treats
scripts without spaces (CJK, Thai) the same as space-separated ones.
"""

from __future__ import annotations

import math
from collections import Counter


def _ngrams(text: str, n: int) -> Counter:
    s = "".join(text.split())  # chrF ignores whitespace
    return Counter(s[i : i + n] for i in range(len(s) - n + 1))


def chrf(hypothesis: str, reference: str, max_n: int = 6, beta: float = 2.0) -> float:
    """chrF in [0, 100]: the F-beta score of character n-grams (n = 1..max_n), averaged over n."""
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        h, r = _ngrams(hypothesis, n), _ngrams(reference, n)
        if not h or not r:
            continue
        match = sum((h & r).values())
        precisions.append(match / sum(h.values()))
        recalls.append(match / sum(r.values()))
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return 100 * (1 + b2) * p * r / (b2 * p + r)


def bits_per_byte(token_logprobs: list[float], text: str) -> float:
    """Bits per UTF-8 byte of ``text`` from the natural-log probabilities of its tokens."""
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == 0:
        return math.nan
    return -sum(token_logprobs) / (math.log(2) * n_bytes)
