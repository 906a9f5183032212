"""A price table keyed like LiteLLM's model_prices JSON, so self-hosted models get a real (shadow) cost.

``{"model": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "litellm_provider": "tokenwise"}}``.
A missing model is an error naming the table, never a silent $0.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tokenwise.rundir import hash_obj


class PriceError(KeyError):
    """A model that has no price in the table."""


class PriceTable:
    """USD per token for prompt and completion tokens, per model name."""

    def __init__(self, prices: dict[str, dict[str, float]], source: str = "<inline>"):
        for name, p in prices.items():
            for key in ("input_cost_per_token", "output_cost_per_token"):
                if not isinstance(p.get(key), int | float) or p[key] < 0:
                    raise ValueError(f"{source}: model {name!r}: {key} must be a number >= 0, got {p.get(key)!r}")
        self.prices, self.source = prices, source

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Load a JSON or YAML price table."""
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a price table is a mapping of model name -> prices")
        return cls(data, str(path))

    @classmethod
    def from_per_million(cls, per_1m: dict[str, tuple[float, float]]) -> PriceTable:
        """Build from (input, output) USD per 1M tokens, as the serve config lists them."""
        return cls(
            {m: {"input_cost_per_token": i / 1e6, "output_cost_per_token": o / 1e6} for m, (i, o) in per_1m.items()}
        )

    @property
    def hash(self) -> str:
        """Stable hash of the prices, stored on every ledger row."""
        return hash_obj(self.prices)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD cost of one request under this table."""
        if model not in self.prices:
            raise PriceError(f"{self.source}: no price for model {model!r}; known: {sorted(self.prices)}")
        p = self.prices[model]
        return prompt_tokens * p["input_cost_per_token"] + completion_tokens * p["output_cost_per_token"]
