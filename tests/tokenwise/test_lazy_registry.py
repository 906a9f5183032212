"""Reading the registry stays light: torch-backed stages are listed by import path and imported when they run."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from _paths import REPO

from serving.quantize.config import QUANTIZER_NAMES
from tokenwise.registry import LazyStageFn, lazy
from tokenwise.stages import REGISTRY

HEAVY = ("torch", "transformers", "peft", "torchao")


def test_cli_and_config_validation_do_not_import_torch():
    """`tokenwise --help` and `tokenwise config validate` (what a flow run of any group does first) in a fresh
    interpreter: no torch/transformers/peft/torchao module is loaded."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tokenwise.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['finetune', '--help'], ['config', 'validate', 'configs/demo.yaml']):\n"
        "    res = r.invoke(app, args)\n"
        "    assert res.exit_code == 0, (args, res.output)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]


LAZY = [s for s in REGISTRY.stages if isinstance(s.run, LazyStageFn)]


def test_the_torch_backed_stages_are_lazy():
    assert {s.name for s in LAZY} >= {"lora", "adapt", "compact", "pretrain", "quantize", "serve", "measure"}


@pytest.mark.parametrize("stage", LAZY, ids=[s.name for s in LAZY])
def test_lazy_stage_resolves_to_its_function_and_its_help_is_the_docstring(stage):
    fn = stage.run.resolve()
    assert (fn.__module__, fn.__qualname__) == (stage.run.__module__, stage.run.__qualname__)
    assert list(inspect.signature(fn).parameters) == ["config_path", "run_dir"]
    first = inspect.getdoc(fn).splitlines()[0]
    assert stage.run.__doc__ == first, f"{stage.name}: update its summary in tokenwise/stages.py to {first!r}"


def test_lazy_reference_errors_name_the_target():
    with pytest.raises(ValueError, match="package.module:function"):
        lazy("finetune.lora", "x")
    missing = lazy("finetune.lora:no_such_stage", "x")
    with pytest.raises(AttributeError, match="no_such_stage"):
        missing("c.yaml", "run")


def test_quantizer_names_in_the_config_match_the_quantizers():
    from serving.quantize.methods import QUANTIZERS  # heavy (torch): the config module must not need it

    assert tuple(QUANTIZERS) == QUANTIZER_NAMES
