"""The CPU install pulls no CUDA packages; the library imports without Prefect."""

import importlib.metadata
import subprocess
import sys


def test_no_nvidia_distributions_on_cpu_install():
    names = sorted(d.metadata["Name"] for d in importlib.metadata.distributions() if d.metadata["Name"])
    assert not [n for n in names if n.lower().startswith("nvidia")], names


def test_library_packages_do_not_import_prefect():
    code = (
        "import sys, curation, finetune, serving, tokenwise.cli\n"
        "assert 'prefect' not in sys.modules, 'library imported prefect'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
