"""A small real run for tests: the demo config shrunk to a few catalogs and modules, run through the real stages."""

from __future__ import annotations

from pathlib import Path

import yaml
from _paths import REPO

ROOT = REPO
CURATION_STAGES = ["corpus", "score", "dedup", "decide", "tokens", "plan"]


def tiny_config(tmp: Path, languages: tuple[str, ...] = ("de", "hi", "ja"), stdlib_modules: int = 12) -> Path:
    """configs/demo.yaml with its corpus cut to a few catalogs/modules and single-process stages."""
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    keep = {"run", "corpus", "score", "dedup", "decide", "tokens", "plan", "report"}
    cfg = {k: v for k, v in cfg.items() if k in keep}
    for src in cfg["corpus"]["sources"]:
        if src.get("type") == "gettext":
            src.update(languages=list(languages), catalogs=["coreutils", "glib20"], exclude_catalogs=[])
        elif src.get("type") == "stdlib":
            src["max_modules"] = stdlib_modules
        elif src.get("type") == "text_dir":
            src["max_files"] = 5
    cfg["corpus"].update(tasks=1, workers=1)
    cfg["score"].update(tokenizers=["tiktoken:cl100k_base"], tasks=1, workers=1, run_tokenizers=False)
    cfg["tokens"].update(tokenizers=["tiktoken:cl100k_base"], tasks=1, workers=1)
    cfg["plan"]["budget_tokens"] = 50_000
    cfg["plan"]["bootstrap"] = 50
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_stages(config: Path, run: Path, stages: list[str] = CURATION_STAGES) -> dict[str, str]:
    """Run the named demo stages in order (the same functions `make demo` runs)."""
    from tokenwise.pipeline import run_demo
    from tokenwise.stages import REGISTRY

    return run_demo(REGISTRY, config, str(run), only=stages)
