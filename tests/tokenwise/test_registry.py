"""The stage registry: one entry makes a stage appear in the CLI, in config validation, the run-dir layout, the
demo pipeline and (tests/flows) a Prefect flow; bad registrations fail at once with what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from tokenwise.cli import build_app
from tokenwise.config import BaseConfig, ConfigError, load_section
from tokenwise.pipeline import run_demo
from tokenwise.registry import Group, Registry, Stage
from tokenwise.rundir import write_json
from tokenwise.stages import REGISTRY


class ToyConfig(BaseConfig):
    """The `toy:` section."""

    words: int = Field(3, ge=1, description="Words to write.")


def toy_run(config_path: str, run_dir: str) -> str:
    """Write a few words into <run>/toy/words.json."""
    cfg = load_section(config_path, "toy", ToyConfig)
    write_json(Path(run_dir, "toy", "words.json"), ["toy"] * cfg.words)
    return f"{cfg.words} words -> {run_dir}/toy"


TOY = Stage("toy", "toy", toy_run, "toy", ToyConfig, upstream=("corpus",), writes=("toy",), command="toy count")
TOY_GROUP = Group("toy", "A toy stage group for the registry tests.")


def test_a_registered_stage_shows_in_cli_help_validation_layout_and_demo(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("toy:\n  words: 2\n")
    with REGISTRY.added(TOY, TOY_GROUP):
        app = build_app(REGISTRY)
        top = CliRunner().invoke(app, ["--help"])
        assert top.exit_code == 0 and "toy" in top.output and "A toy stage group" in top.output
        sub = CliRunner().invoke(app, ["toy", "--help"])
        assert "count" in sub.output and "Write a few words" in sub.output
        ran = CliRunner().invoke(app, ["toy", "count", "--config", str(cfg), "--run", str(tmp_path / "run")])
        assert ran.exit_code == 0, ran.output
        assert json.loads((tmp_path / "run" / "toy" / "words.json").read_text()) == ["toy", "toy"]
        assert REGISTRY.validate_file(cfg)["toy"].words == 2
        bad = tmp_path / "bad.yaml"
        bad.write_text("toy:\n  words: 0\n")
        with pytest.raises(ConfigError, match=r"bad.yaml:2: toy.words: Input should be greater than or equal to 1"):
            REGISTRY.validate_file(bad)
        assert REGISTRY.layout()["toy"] is TOY and REGISTRY.writer_commands()["toy"] == "tokenwise toy count"
        summaries = run_demo(REGISTRY, cfg, str(tmp_path / "demo"), only=["toy"])
        assert summaries == {"toy": f"2 words -> {tmp_path}/demo/toy"}
    assert "toy" not in REGISTRY.group_names()
    assert "toy" not in CliRunner().invoke(build_app(REGISTRY), ["--help"]).output
    with pytest.raises(ConfigError, match="unknown section 'toy'"):
        REGISTRY.validate_file(cfg)


def test_every_shipped_stage_has_its_function_section_and_command():
    assert [s.name for s in REGISTRY.demo_stages()][:3] == ["corpus", "quality", "score"]
    assert REGISTRY.demo_stages()[-1].name == "report"
    for s in REGISTRY.stages:
        assert callable(s.run) and s.run.__doc__, s.name
        assert s.section in REGISTRY.sections(), s.name
    assert set(REGISTRY.sections()) >= {"run", "prefect", "corpus", "decide", "tokenizer", "serve", "measure"}
    assert {s.name for s in REGISTRY.stages if s.device == "gpu"} == {"pretrain", "lora", "compact", "adapt",
                                                                      "quantize", "serve", "measure"}
    assert REGISTRY.stage("source").section == "sources" and REGISTRY.stage("source").command == "models fetch"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([Stage("a", "g", toy_run), Stage("a", "g", toy_run)], "registered twice"),
        ([Stage("a", "nope", toy_run)], "unknown group 'nope'"),
        ([Stage("b", "g", toy_run, upstream=("a",)), Stage("a", "g", toy_run)], "must be registered before it"),
        ([Stage("a", "g", toy_run, "x", ToyConfig), Stage("b", "g", toy_run, "x", BaseConfig)], "has two models"),
    ],
)
def test_bad_registrations_fail_naming_the_fix(stages, message):
    with pytest.raises(ValueError, match=message):
        Registry([Group("g", "g")], stages)


def test_a_stage_needs_both_section_and_model_and_a_command_in_its_group():
    with pytest.raises(ValueError, match="both section and config"):
        Stage("a", "g", toy_run, section="x")
    with pytest.raises(ValueError, match="must start with its group"):
        Stage("a", "g", toy_run, command="other a")


def test_upstream_paths_are_what_a_group_reads_from_other_groups():
    assert REGISTRY.upstream_paths("curate") == ("corpus", "models/quality")
    assert REGISTRY.upstream_paths("tokenizer") == ("curated", "plans", "models")  # extends a source model's tokenizer
    assert REGISTRY.upstream_paths("finetune") == ("curated", "plans", "models", "tokenizers")
    assert REGISTRY.upstream_paths("quantize") == ("models",)
    assert set(REGISTRY.upstream_paths("measure")) == {"models", "tokenizers", "serve"}
