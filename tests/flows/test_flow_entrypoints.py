"""Flow entrypoints cannot shadow a package: module-path entrypoints, and no flow file named like an importable module.

Prefect imports a file entrypoint (``flows/x.py:fn``) under its bare file name ``x``; a flow file named like a package
(``flows/finetune.py``) then shadows that package in the flow-run process, and the first import of it fails.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from _paths import REPO

from flows.deployments import deployment_flows, entrypoint

FLOWS = REPO / "flows"


def test_entrypoints_are_importable_module_paths():
    for name, (flow, _) in deployment_flows().items():
        module, _, fn = entrypoint(flow).partition(":")
        assert ".py" not in module and "/" not in module, f"{name}: file entrypoint {entrypoint(flow)!r}"
        assert getattr(importlib.import_module(module), fn) is flow


def _top_level_names() -> set[str]:
    """Every top-level module or package importable here except the flows/ files themselves."""
    paths = [p for p in sys.path if Path(p or ".").resolve() != FLOWS]
    names = {m.name for m in pkgutil.iter_modules(paths)}
    return names | set(sys.builtin_module_names) | set(sys.stdlib_module_names)


def test_no_flow_file_is_named_like_an_importable_module():
    taken = _top_level_names()
    clashes = [f.name for f in FLOWS.glob("*.py") if f.stem != "__init__" and f.stem in taken]
    assert not clashes, f"flows/ files named like importable modules (shadowed when Prefect loads them): {clashes}"


def test_the_shadowing_check_catches_a_package_name(tmp_path):
    """The check above is not vacuous: the project's own packages are among the names it refuses."""
    taken = _top_level_names()
    assert {"curation", "finetune", "serving", "flows", "prefect", "json"} <= taken


def test_flow_files_loaded_by_path_still_validate_the_shipped_config():
    """Even a file-path load (how `prefect deploy` with a source checkout runs) leaves every package importable."""
    files = sorted(f"{f.relative_to(REPO)}" for f in FLOWS.glob("*_flow.py"))
    assert len(files) >= 10
    code = (
        "import sys\nfrom prefect.utilities.importtools import load_script_as_module\n"
        f"for f in {files!r}: load_script_as_module(f)\n"
        "from tokenwise.stages import REGISTRY\n"
        "print(sorted(REGISTRY.validate_file('configs/demo.yaml')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'lora'" in out.stdout and "'serve'" in out.stdout, out.stdout
