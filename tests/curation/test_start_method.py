"""``start_method: auto``: fork only where a forked child cannot hang (no Python thread, no native pool started)."""

from __future__ import annotations

import subprocess
import sys

from _paths import REPO

CHECK = """
import threading, time
from curation.executors import resolve_start_method
from curation.ingest.build import build  # polars, pyarrow, datatrove imported: their idle threads are fork-safe
print(resolve_start_method("auto"))
import polars as pl, io
pl.read_ndjson(io.BytesIO(b'{"a": 1}\\n'))  # polars' thread pool starts: a forked child would wait on it forever
print(resolve_start_method("auto"))
"""

THREAD = """
import threading, time
from curation.executors import resolve_start_method
threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
print(resolve_start_method("auto"), resolve_start_method("spawn"))
"""


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_auto_forks_a_fresh_process_and_not_one_with_a_started_pool():
    assert _run(CHECK) == ["fork", "forkserver"]


def test_auto_does_not_fork_a_process_running_python_threads():
    assert _run(THREAD) == ["forkserver", "spawn"]
