"""Which library entry points each stage flow runs, read from ``curation.pipeline.DEMO_STAGES``.

A flow never hard-codes stage logic: it looks up the ``module:function(config_path, run_dir) -> summary`` entry points
that the stage owners registered in DEMO_STAGES, grouped by module into the stage flows. A stage whose library has
not landed yet simply has no entry, and its flow reports that instead of running anything.
"""

from __future__ import annotations

from dataclasses import dataclass

# stage group -> module prefixes (or exact "module:function" targets) of its library entry points; order within a group
# follows DEMO_STAGES
GROUP_MODULES: dict[str, tuple[str, ...]] = {
    "corpus": ("curation.corpus",),
    "quality": ("curation.quality",),
    "curate": (
        "curation.score",
        "curation.dedup",
        "curation.decide",
        "curation.token_counts",
        "curation.plans",
        "curation.curate",
    ),
    "tokenizer": ("curation.tokenizer_train", "curation.tokenizer_eval", "curation.tokenizer"),
    "finetune": ("finetune.",),
    "quantize": ("serving.quantize",),
    "serve": ("serving.commands_serve", "serving.serve", "serving.router"),
    "measure": ("serving.measure", "serving.ledger"),
    "report": ("curation.report",),
}
GPU_GROUPS = frozenset({"finetune", "quantize", "serve", "measure"})

# stage target -> ("module:flow" of its per-shard form, "module:function" summarising the flow's result in one line):
# run_group runs the flow as a subflow on `prefect: task_runner:` (one task per shard, on threads or a Ray cluster)
# instead of one cached stage task; the flow takes (run_dir, config_path=...)
FANOUT: dict[str, tuple[str, str]] = {
    "curation.token_counts:run_stage": ("flows.ray_runner:token_counts_flow", "curation.token_counts:fmt_counts"),
}

# run-directory stages each group reads (their completion markers feed the cache key)
UPSTREAM: dict[str, tuple[str, ...]] = {
    "corpus": (),
    "quality": ("corpus",),
    "curate": ("corpus", "models/quality"),
    "tokenizer": ("curated", "plans"),
    "finetune": ("curated", "plans", "tokenizers"),
    "quantize": ("models",),
    "serve": ("models", "tokenizers"),
    "measure": ("models", "tokenizers", "serve"),
    "report": ("corpus", "signals", "curated", "plans", "tokenizers", "models", "measure"),
}


@dataclass(frozen=True)
class Stage:
    """One library entry point: ``target`` is ``module:function(config_path, run_dir) -> summary``."""

    name: str
    target: str

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


def demo_stages() -> list[Stage]:
    """Every registered stage in data-flow order (re-read each call: stages land while the server runs)."""
    from curation.pipeline import DEMO_STAGES

    return [Stage(name, target) for name, target in DEMO_STAGES]


def group_of(stage: Stage) -> str | None:
    """The stage group whose module prefixes match this stage, or None."""
    for group, prefixes in GROUP_MODULES.items():
        if any(stage.target == p or _matches(stage.module, p) for p in prefixes):
            return group
    return None


def _matches(module: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return module.startswith(prefix)
    return module == prefix or module.startswith(prefix + ".")


def stages_of(group: str) -> list[Stage]:
    """The registered stages of one group, in DEMO_STAGES order."""
    if group not in GROUP_MODULES:
        raise ValueError(f"unknown stage group {group!r}; expected one of: {', '.join(GROUP_MODULES)}")
    return [s for s in demo_stages() if group_of(s) == group]


def groups_in_order() -> list[str]:
    """Stage groups that have at least one registered stage, ordered by their first stage in DEMO_STAGES."""
    seen: list[str] = []
    for s in demo_stages():
        g = group_of(s)
        if g and g not in seen:
            seen.append(g)
    return seen


def unassigned() -> list[Stage]:
    """Registered stages no group claims (a test keeps this empty so end-to-end runs every stage)."""
    return [s for s in demo_stages() if group_of(s) is None]
