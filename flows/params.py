"""Flow parameters: flat pydantic models the Prefect UI renders as typed forms.

Every field is a primitive, a ``Literal`` or a ``list[str]`` with a description, so a deployment's "Run" form shows one
input per field with its default. The stage knobs themselves live in the YAML config named by ``config_path`` (the same
file and the same pydantic models the CLI uses), so "pass a YAML config path instead" is the normal way to run a flow.

"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

StageGroup = Literal["corpus", "quality", "curate", "tokenizer", "finetune", "quantize", "serve", "measure", "report"]


class StageParams(BaseModel):
    """Which config and run directory a stage flow works on."""

    model_config = ConfigDict(extra="forbid")

    config_path: str = Field(
        "configs/demo.yaml",
        description="YAML config file with one section per stage (validated like `tokenwise config validate`); "
        "relative paths resolve against the worker's working directory.",
    )
    run_dir: str = Field(
        "runs/demo",
        description="Run directory every stage reads and writes (local path or fsspec URL such as s3://bucket/run).",
    )


class EndToEndParams(StageParams):
    """The end-to-end flow: every stage whose library exists, in data-flow order."""

    only: list[StageGroup] = Field(
        default_factory=list,
        description="Run only these stage groups (empty: all available, in data-flow order).",
    )
    stop_after: StageGroup | None = Field(
        None, description="Stop after this stage group (e.g. `curate` to skip training and serving)."
    )
