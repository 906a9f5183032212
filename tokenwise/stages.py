"""Every stage of tokenwise, in data-flow order: the one list the CLI, the demo, the flows, config validation, the
run-dir layout and the report read.

Adding a stage: write its module (a ``run(config_path, run_dir) -> summary`` function and a pydantic section model),
then add one :class:`~tokenwise.registry.Stage` entry below. This module sits above the stage packages (it imports
them); the kernel modules it builds on (:mod:`tokenwise.registry`, :mod:`tokenwise.config`) import none of them.
"""

from __future__ import annotations

from curation.commands import app as curate_app
from curation.decide import decisions
from curation.ingest import build as ingest
from curation.ingest.commands import app as corpus_app
from curation.plans import sampling, token_counts
from curation.quality import classifier
from curation.quality.commands import app as quality_app
from curation.signals import dedup, score
from curation.tokenizer import evaluate, train
from curation.tokenizer.commands import app as tokenizer_app
from curation.tokenizer.config import TokenizerSection
from finetune.commands import app as finetune_app
from finetune.config import AdaptConfig, LoraConfig, PretrainConfig
from report.build import ReportConfig, report_from_config
from report.commands import report_cmd
from serving import sources
from serving.api.commands import app as serve_app
from serving.api.config import ServeConfig
from serving.measure.commands import app as measure_app
from serving.measure.config import MeasureConfig
from serving.quantize.commands import app as quantize_app
from serving.quantize.config import CompactConfig, QuantizeConfig
from tokenwise.config import RunConfig
from tokenwise.orchestration import PrefectConfig
from tokenwise.registry import Group, Registry, Stage, lazy

GROUPS = [
    Group("corpus", "Read sources (JSONL, Parquet, text dirs, datasets, .mo catalogs, stdlib) into corpus shards.",
          corpus_app),  # fmt: skip
    Group("quality", "Train the DCLM-style fastText quality classifier.", quality_app),
    Group("curate", "Curation: signals, duplicates, decisions, what-if, token counts, plans.", curate_app),
    Group("models", "Bring pretrained models into the run: local HF dirs, GGUF files, model packages (converted once, "
          "cached by content hash)."),  # fmt: skip
    Group("tokenizer", "Train, extend and evaluate tokenizers on the run's curated data.", tokenizer_app),
    Group("finetune", "LoRA fine-tune models, trim their vocabulary, train drafters, adapt them to a new tokenizer.",
          finetune_app),  # fmt: skip
    Group("quantize", "Quantize models (torchao) and report size, speed and perplexity vs unquantized.", quantize_app),
    Group("serve", "Serve models behind an OpenAI-compatible API, with routing.", serve_app),
    Group("measure", "Replay held-out requests through baseline and optimized stacks; write the ledger.", measure_app),
    Group("report", "Write the self-contained HTML report of a run.", report_cmd),
]

# torch-backed stages are listed by import path (imported when they run): reading the registry stays light. Each
# summary is the first line of the function's docstring (tests/tokenwise/test_lazy_registry.py checks they agree).
LORA_DOC = "Demo stage ``lora``: fine-tune the target on one domain; adapter under ``<run>/models/<output>/``."
ADAPT_DOC = "Stage ``adapt``: move the `adapt` section's base onto its new tokenizer; one-line summary."
COMPACT_DOC = "Stage ``compact``: trim the configured model's vocabulary to the curated corpus; report vs untrimmed."
PRETRAIN_DOC = "Demo stage ``pretrain``: target and draft models under ``<run>/models/``."
QUANTIZE_DOC = ("Demo stage: report each configured model's quantizations vs unquantized; writes "
                "models/<name>/quantized/.")  # fmt: skip
SERVE_DOC = "Demo stage: calibrate routers, then serve on a free loopback port and answer a few requests via openai."
MEASURE_DOC = ("Demo stage: measure every stack (skipped when models, data and config are unchanged); one-line "
               "summary.")  # fmt: skip

MODELS = ("source", "lora", "adapt", "compact", "pretrain")  # stages whose outputs are the served models

STAGES = [
    Stage("corpus", "corpus", ingest.build_from_config, "corpus", ingest.CorpusConfig,
          writes=("corpus",), command="corpus build"),
    Stage("quality", "quality", classifier.train_from_config, "quality", classifier.QualityConfig,
          upstream=("corpus",), writes=("models/quality",), command="quality train"),
    Stage("score", "curate", score.score_from_config, "score", score.ScoreConfig,
          upstream=("corpus", "quality"), writes=("signals",), command="curate score"),
    Stage("dedup", "curate", dedup.run_stage, "dedup", dedup.DedupConfig,
          upstream=("corpus",), writes=("signals/dedup",), command="curate dedup"),
    Stage("decide", "curate", decisions.run_stage, "decide", decisions.DecideConfig,
          upstream=("score", "dedup"), writes=("curated",), command="curate decide"),
    Stage("tokens", "curate", token_counts.run_stage, "tokens", token_counts.TokenCountConfig,
          upstream=("decide",), writes=("tokens",), command="curate tokens"),
    Stage("plan", "curate", sampling.run_stage, "plan", sampling.PlanConfig,
          upstream=("decide",), writes=("plans",), command="curate plan"),
    Stage("source", "models", sources.run_stage, "sources", sources.SourcesConfig,
          writes=("models",), command="models fetch"),
    Stage("tokenizer_train", "tokenizer", train.run_stage, "tokenizer", TokenizerSection,
          upstream=("decide", "plan", "source"), writes=("tokenizers",), command="tokenizer train"),
    Stage("tokenizer_eval", "tokenizer", evaluate.run_stage, "tokenizer", TokenizerSection,
          upstream=("tokenizer_train",), writes=("tokenizers",), command="tokenizer eval"),
    Stage("lora", "finetune", lazy("finetune.lora:demo_stage", LORA_DOC), "lora", LoraConfig,
          upstream=("decide", "source"), writes=("models",), device="gpu", command="finetune lora"),
    Stage("adapt", "finetune", lazy("finetune.adapt_tokenizer:adapt_stage", ADAPT_DOC), "adapt", AdaptConfig,
          upstream=("lora", "tokenizer_train"), writes=("models",), device="gpu", command="finetune adapt"),
    Stage("compact", "finetune", lazy("serving.quantize.compact:run_stage", COMPACT_DOC), "compact", CompactConfig,
          upstream=("decide", "lora", "adapt"), writes=("models",), device="gpu", command="finetune compact"),
    Stage("pretrain", "finetune", lazy("finetune.pretrain:demo_stage", PRETRAIN_DOC), "pretrain", PretrainConfig,
          upstream=("decide", "plan", "tokenizer_train", "compact"), writes=("models",), device="gpu",
          command="finetune pretrain"),
    Stage("quantize", "quantize", lazy("serving.quantize.stage:run_quantize_stage", QUANTIZE_DOC), "quantize",
          QuantizeConfig,
          upstream=MODELS, writes=("models",), device="gpu", command="quantize"),
    Stage("serve", "serve", lazy("serving.api.stage:run_serve_stage", SERVE_DOC), "serve", ServeConfig,
          upstream=(*MODELS, "quantize", "tokenizer_train"), writes=("serve",), device="gpu"),
    Stage("measure", "measure", lazy("serving.measure.run:measure_from_config", MEASURE_DOC), "measure", MeasureConfig,
          upstream=(*MODELS, "quantize", "tokenizer_train", "serve"), writes=("measure",), device="gpu",
          command="measure"),
]  # fmt: skip


def report_stage(config_path: str, run_dir: str) -> str:
    """Stage ``report``: the HTML report of the run, with "run this first" hints from the registry."""
    return report_from_config(config_path, run_dir, commands=REGISTRY.writer_commands())


STAGES.append(
    Stage("report", "report", report_stage, "report", ReportConfig,
          upstream=tuple(s.name for s in STAGES if s.demo), writes=("report",), command="report")  # fmt: skip
)

REGISTRY = Registry(GROUPS, STAGES, extra_sections={"run": RunConfig, "prefect": PrefectConfig})
