"""A tiny library-style stage for the orchestration tests (the real stages are tested in their own files).

It follows the stage contract: ``(config_path, run_dir) -> summary``, atomic writes, a completion marker keyed on
its inputs, a skip when the marker matches, and a clear error naming the file and record on bad input. Its "records"
are the config file's comment lines starting with ``# record:``; each call is appended to ``<run>/../calls.log`` so
tests can see whether the orchestration ran it or served it from cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect.client.orchestration import get_client

from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, hash_obj, sha256_file, write_json


def count_records(config_path: str, run_dir: str) -> str:
    """Count ``# record: <lang> <text>`` lines per language into ``<run>/toy/counts.json``."""
    with open(Path(run_dir).parent / "calls.log", "a") as f:
        f.write(f"count_records {run_dir}\n")
    run = RunDir(run_dir)
    inputs = hash_obj([sha256_file(config_path)])
    if run.is_done("toy", inputs):
        return "toy: already done"
    flag = Path(run_dir).parent / "flaky.done"
    if "# flaky" in Path(config_path).read_text() and not flag.exists():
        flag.touch()
        raise OSError(5, "Input/output error (a flaky network filesystem)", config_path)
    counts: dict[str, int] = {}
    lines = Path(config_path).read_text().splitlines()
    log = logging.getLogger(__name__)
    log.info(kv(stage="toy", steps=len(lines)))
    for i, line in enumerate(lines, 1):
        log.info(kv(step=i))
        if not line.startswith("# record:"):
            continue
        parts = line.removeprefix("# record:").split()
        if len(parts) < 2:
            raise ValueError(
                f"{config_path}:{i}: record {line!r} has no text after the language; "
                "write `# record: <lang> <text>` or delete the line"
            )
        counts[parts[0]] = counts.get(parts[0], 0) + 1
    write_json(run.stage("toy", "counts.json"), {"by_lang": {k: {"docs": v} for k, v in counts.items()}})
    with atomic_open(run.stage("toy", "note.txt"), "w") as f:
        f.write("ok\n")
    run.mark_done("toy", inputs, {"docs": sum(counts.values())})
    return f"{sum(counts.values())} records in {len(counts)} languages"


def summarise(config_path: str, run_dir: str) -> str:
    """A second stage reading the first one's output (checks ordering within and across groups)."""
    run = RunDir(run_dir)
    counts = __import__("json").loads(Path(run.path("toy", "counts.json")).read_text())
    with open(Path(run_dir).parent / "calls.log", "a") as f:
        f.write(f"summarise {run_dir}\n")
    write_json(run.stage("toysum", "summary.json"), {"languages": sorted(counts["by_lang"])})
    run.mark_done("toysum", hash_obj(counts))
    return f"{len(counts['by_lang'])} languages"


def read_artifact(key: str):
    """The newest artifact with this key on the current Prefect API (None when there is none)."""
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda a: a.created) if found else None


def write_shards(config_path: str, run_dir: str) -> str:
    """A per-shard stage: one ``toyshards/shard-*.json`` per corpus shard, each time waiting until the flow's progress
    artifact shows it (so a test sees every per-shard update); what it saw goes to ``toyshards/seen.json``."""
    run = RunDir(run_dir)
    shards = sorted(Path(run.path("corpus")).glob("shard-*"))
    seen = []
    for i, shard in enumerate(shards, 1):
        write_json(run.stage("toyshards", f"shard-{i:05d}.json"), {"from": shard.name})
        seen.append(wait_for_progress("tokenwise-toyshards-progress", f"toyshards: {i}/{len(shards)} shards"))
    write_json(run.stage("toyshards", "seen.json"), seen)
    run.mark_done("toyshards", hash_obj(seen))
    return f"{len(shards)} shards"


def wait_for_progress(key: str, description: str, timeout_s: float = 60.0) -> list:
    """Poll the artifact ``key`` until its description is ``description``; returns [description, percent]."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        art = read_artifact(key)
        if art is not None and art.description == description:
            return [art.description, art.data]
        time.sleep(0.2)
    raise TimeoutError(f"artifact {key} never showed {description!r} (last: {art and art.description!r})")
