"""Config loading: every YAML in configs/ validates; errors name file, line, key and what was expected."""


import pytest
from _paths import REPO

from tokenwise.config import ConfigError, RunConfig, load_section
from tokenwise.stages import REGISTRY

validate_file = REGISTRY.validate_file

CONFIGS = sorted(REPO.joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    validate_file(path)


def test_unknown_key_names_file_line_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run:\n  dir: x\n  sede: 3\n")
    with pytest.raises(ConfigError) as e:
        validate_file(f)
    msg = str(e.value)
    assert f"{f}:3" in msg and "run.sede" in msg and "unknown key" in msg


def test_wrong_type_says_what_was_expected(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run:\n  seed: lots\n")
    with pytest.raises(ConfigError) as e:
        load_section(f, "run", RunConfig)
    assert f"{f}:2" in str(e.value) and "run.seed" in str(e.value) and "integer" in str(e.value)


def test_unknown_section_and_missing_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("runn:\n  dir: x\n")
    with pytest.raises(ConfigError, match="unknown section 'runn'"):
        validate_file(f)
    with pytest.raises(ConfigError, match="config file not found"):
        validate_file(tmp_path / "nope.yaml")


def test_cli_config_validate(tmp_path):
    from typer.testing import CliRunner

    from tokenwise.cli import app

    good = CliRunner().invoke(app, ["config", "validate", str(CONFIGS[0])])
    assert good.exit_code == 0, good.output
    f = tmp_path / "bad.yaml"
    f.write_text("run:\n  seed: [1]\n")
    bad = CliRunner().invoke(app, ["config", "validate", str(f)])
    assert bad.exit_code == 1 and "run.seed" in bad.output
