"""Orchestration overhead: the corpus stage called directly vs through its Prefect flow (ephemeral server).

    .venv/bin/python bench/flows.py [--small]

Measures, on one tiny corpus config (two .mo catalogs, a few stdlib modules): the library build, the flow's first run
(hash inputs + the same build + artifacts), the flow's rerun with unchanged inputs (served from the task cache) and the
library's own rerun (completion-marker skip). Writes bench/results/flows.json with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIG = """\
corpus:
  sources:
    - {{type: gettext, languages: [de, fr], catalogs: [{catalogs}], min_words: 2}}
    - {{type: stdlib, max_modules: {modules}}}
  tasks: 1
  workers: 1
"""


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="one catalog, three modules")
    a = ap.parse_args()
    os.environ.setdefault("TOKENWISE_PROGRESS", "0")
    from prefect.testing.utilities import prefect_test_harness

    import tokenwise.pipeline as pipeline
    from curation.ingest.build import build_from_config
    from flows.corpus_flow import corpus_flow
    from flows.params import StageParams

    pipeline.DEMO_STAGES[:] = [("corpus", "curation.ingest.build:build_from_config")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-flows-"))
    cfg = tmp / "c.yaml"
    cfg.write_text(CONFIG.format(catalogs="adduser" if a.small else "adduser, bash", modules=3 if a.small else 20))
    res: dict[str, float] = {}
    try:
        res["library_build_s"], summary = timed(build_from_config, str(cfg), str(tmp / "lib"))
        res["library_rerun_s"], _ = timed(build_from_config, str(cfg), str(tmp / "lib"))
        with prefect_test_harness(server_startup_timeout=180):
            params = StageParams(config_path=str(cfg), run_dir=str(tmp / "flow"))
            res["flow_first_run_s"], _ = timed(corpus_flow, params)
            res["flow_cached_rerun_s"], _ = timed(corpus_flow, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {k: round(v, 3) for k, v in res.items()}
    ratios = {
        "flow_first_vs_library_build": round(res["flow_first_run_s"] / res["library_build_s"], 2),
        "flow_cached_vs_library_rerun": round(res["flow_cached_rerun_s"] / res["library_rerun_s"], 2),
        "overhead_first_run_s": round(res["flow_first_run_s"] - res["library_build_s"], 3),
    }
    out = {"bench": "flows", "small": a.small, "corpus": summary, "seconds": res, "ratios": ratios, **machine()}
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/flows.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"seconds": res, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
