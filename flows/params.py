"""Flow parameters: flat pydantic models the Prefect UI renders as typed forms.

Every field is a primitive, a ``Literal`` or a ``list[str]`` with a description, so a deployment's "Run" form shows one
input per field. ``config_path`` names the YAML config (the same file and the same pydantic section models the CLI
uses); the other fields of a stage group's model are its *knobs*: each names the config key it sets
(:func:`knob`), its deployment default is that key's value in the config the deployment was served with, and a blank
(None) or untouched field means "the config's value" (:mod:`flows.settings` resolves them into the effective config
the stages read). Types only here: the bounds live in the section models, which validate the effective config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StageGroup = Literal[
    "corpus", "quality", "curate", "models", "tokenizer", "finetune", "quantize", "serve", "measure", "report"
]
BLANK = "Blank = the config's value."


def knob(key: str, description: str, **how: Any) -> Any:
    """A run-form field that overrides config key ``key`` (``section.a[k=v].b``; see flows.settings).

    ``how`` refines the mapping: ``select_by="name"`` keeps the list items whose name is listed, ``assign=True`` takes
    ``name=value`` items for ``{name}`` in the key, ``null_if=["*"]`` maps that value to null, ``selector=True`` is a
    field other keys refer to as ``{field}`` (not set itself), ``fill=False`` leaves the deployment default blank.
    """
    return Field(None, description=f"{description} {BLANK} (`{key}`)", json_schema_extra={"config_key": key, **how})


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

    @model_validator(mode="before")
    @classmethod
    def _from_other_params(cls, data: Any) -> Any:
        """Another group's params (e.g. the end-to-end flow's) pass on their config path and run dir, not knobs."""
        if isinstance(data, StageParams) and not isinstance(data, cls):
            return {k: v for k, v in data.model_dump().items() if k in StageParams.model_fields}
        return data


class CorpusParams(StageParams):
    """The corpus build: which sources to read, so one run can be small (a few languages, catalogs, files)."""

    languages: list[str] | None = knob(
        "corpus.sources[type=gettext].languages", "gettext sources: locale codes or globs to read (de, fr, zh_*)."
    )
    catalogs: list[str] | None = knob(
        "corpus.sources[type=gettext].catalogs", "gettext sources: catalog (domain) globs to read (coreutils, gtk30)."
    )
    max_stdlib_modules: int | None = knob("corpus.sources[type=stdlib].max_modules", "stdlib source: module cap.")
    text_dir_paths: list[str] | None = knob("corpus.sources[type=text_dir].paths", "text_dir sources: directories.")
    text_dir_max_files: int | None = knob("corpus.sources[type=text_dir].max_files", "text_dir sources: file cap.")


class CurateParams(StageParams):
    """Curation: the decide rules' thresholds and the languages kept (signals are reused; decisions rerun)."""

    lang_low_score: float | None = knob(
        "decide.rules.lang_low_score.threshold", "Drop documents whose language-ID score is below this."
    )
    top_2_gram: float | None = knob(
        "decide.rules.top_2_gram.threshold", "Drop documents whose top 2-gram share is above this (repetition)."
    )
    gopher_short_doc: float | None = knob(
        "decide.rules.gopher_short_doc.threshold", "Drop documents with fewer non-symbol words than this."
    )
    quality_low: float | None = knob(
        "decide.rules.quality_low.threshold", "Drop documents whose quality-classifier score is below this."
    )
    rule_thresholds: list[str] | None = knob(
        "decide.rules.{rule}.threshold",
        "Any rule's threshold as rule=value (rule=none turns it off), like `curate whatif --set`.",
        assign=True,
        fill=False,
    )
    allowed_langs: list[str] | None = knob(
        "decide.allowed_langs",
        'Languages kept (others dropped as lang_not_allowed); ["*"] keeps every language.',
        null_if=["*"],
    )


class TokenizerParams(StageParams):
    """Tokenizer training: the model and vocabulary size of one `tokenizer.train` entry."""

    tokenizer_name: str | None = knob(
        "tokenizer.train[0].name",
        "The `tokenizer.train` entry the fields below change (default: the first).",
        selector=True,
    )
    model: Literal["bpe", "unigram", "parity_bpe"] | None = knob(
        "tokenizer.train[name={tokenizer_name}].model",
        "bpe trains fast; unigram often splits morphology better; parity_bpe balances tokens across languages.",
    )
    vocab_size: int | None = knob(
        "tokenizer.train[name={tokenizer_name}].vocab_size", "Vocabulary size (bigger = shorter sequences)."
    )


class FinetuneParams(StageParams):
    """LoRA fine-tuning of the target model (the pretrained base models keep the config's settings)."""

    steps: int | None = knob("lora.steps", "LoRA optimizer steps.")
    rank: int | None = knob("lora.rank", "LoRA rank: adapter capacity vs trainable parameters.")
    lr: float | None = knob("lora.lr", "LoRA peak learning rate.")
    domains: list[str] | None = knob("lora.data.domains", "Domains the adapter is trained and evaluated on.")


class MeasureParams(StageParams):
    """The measurement: how many held-out requests, through which stacks."""

    requests: int | None = knob("measure.requests", "Held-out requests replayed through every stack.")
    stacks: list[str] | None = knob(
        "measure.stacks",
        "Stacks to measure, by name (config order; the baseline stack must stay first).",
        select_by="name",
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
