"""The Prefect flow of every stage group in the registry: the hand-written ones (with their artifacts), and a
generated flow for any other group, so a new stage group gets a flow (and a deployment) without a new module.

Generated flows are attributes of this module (``flows.catalog:<group>_flow``), so module-path entrypoints load them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_group, run_name
from flows.corpus_flow import corpus_flow
from flows.curate_flow import curate_flow
from flows.finetune_flow import finetune_flow
from flows.measure_flow import measure_flow
from flows.params import StageParams
from flows.quality_flow import quality_flow
from flows.quantize_flow import quantize_flow
from flows.report_flow import report_flow
from flows.serve_flow import serve_flow
from flows.tokenizer_flow import tokenizer_flow
from tokenwise.stages import REGISTRY

BUILT_IN: dict[str, Any] = {
    "corpus": corpus_flow,
    "quality": quality_flow,
    "curate": curate_flow,
    "tokenizer": tokenizer_flow,
    "finetune": finetune_flow,
    "quantize": quantize_flow,
    "serve": serve_flow,
    "measure": measure_flow,
    "report": report_flow,
}
_GENERATED: dict[str, Any] = {}


def flow_attr(group: str) -> str:
    """The attribute name of a group's flow: ``<group>_flow``."""
    return f"{group.replace('-', '_')}_flow"


def group_flow(group: str) -> Any:
    """The flow of a registry group: its hand-written flow, else a generated one (cached per group)."""
    if group in BUILT_IN:
        return BUILT_IN[group]
    if group not in _GENERATED:
        _GENERATED[group] = generic_flow(group)
    return _GENERATED[group]


def generic_flow(group: str) -> Any:
    """A flow that runs the group's stages as cached tasks (no group-specific artifacts beyond the summary)."""
    info = REGISTRY.group(group)

    def run(params: StageParams = StageParams()) -> dict[str, Any]:
        return run_group(group, params)

    run.__name__ = run.__qualname__ = flow_attr(group)
    run.__module__ = __name__
    run.__doc__ = f"{info.help}\n\nArgs:\n    params: Config file and run directory of the run.\n"
    return flow(name=f"tokenwise-{group}", flow_run_name=run_name(group), persist_result=True)(run)


def __getattr__(name: str) -> Any:
    """``flows.catalog:<group>_flow`` for generated flows (how a module-path entrypoint finds them)."""
    for group in REGISTRY.group_names():
        if flow_attr(group) == name and group not in BUILT_IN:
            return group_flow(group)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
