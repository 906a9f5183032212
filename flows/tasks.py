"""Generic Prefect tasks: hash inputs, run one library stage with caching, publish artifacts with stable keys.

Tasks pass paths and content hashes, never DataFrames or models. The stage task caches on (input file hashes, config
hash, code version), so a retried or re-triggered flow skips finished work; the library's own completion markers make
the stage itself idempotent, and the flow never writes a completion marker. Stages with a per-shard form
(``flows.ray_runner.FANOUT``) run as a subflow of one task per shard on the configured task runner instead.
"""

from __future__ import annotations

import contextvars
import csv
import functools
import hashlib
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.tasks import exponential_backoff

from flows.ray_runner import FANOUT, TaskRunnerError, describe, with_task_runner
from tokenwise.config import ConfigError, read_yaml
from tokenwise.log import LIBRARY_LOGGERS
from tokenwise.orchestration import TaskRunnerConfig
from tokenwise.rundir import MARKER, RunDir, hash_obj, read_json, sha256_file, write_json
from tokenwise.stages import REGISTRY

REPO = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("tokenwise", "curation", "finetune", "serving", "report", "flows")
MAX_ROWS = 200
# library loggers a stage task forwards to the run's logs (flows' own lines go through Prefect's logger already)
FORWARDED = tuple(n for n in LIBRARY_LOGGERS if n != "flows")


class StageFailed(RuntimeError):
    """A stage that failed; the message names the stage, the cause (file, record) and what to do next."""


def _retry_io_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient I/O errors only; a bad record or config fails at once with its message."""
    try:
        state.result()
    except StageFailed as e:
        return isinstance(e.__cause__, OSError) and not isinstance(e.__cause__, FileNotFoundError)
    except OSError as e:
        return not isinstance(e, FileNotFoundError)
    except Exception:
        return False
    return False


# I/O tasks retry transient errors (network filesystems, object stores) with exponential backoff
IO_RETRIES: dict[str, Any] = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_io_only,
)


def _task_run_name() -> str:
    from prefect.runtime import task_run  # heavy: deferred until used

    return f"{task_run.parameters['stage']['name']}"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the library and flow sources, so a code change invalidates cached task results."""
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def config_hash(config_path: str) -> str:
    """Hash of the config file's bytes: any edit re-runs the stage (the library skips what it can)."""
    return sha256_file(config_path)[:16]


def upstream_hashes(run_dir: str, group: str) -> dict[str, str]:
    """Content hashes of the run-directory inputs of a stage group: each upstream stage's completion marker."""
    run = RunDir(run_dir)
    out: dict[str, str] = {}
    for stage in REGISTRY.upstream_paths(group):
        for marker in sorted(_markers_under(run, stage)):
            out[marker] = sha256_file(run.path(marker))
    return out


def source_fingerprint(config_path: str) -> dict[str, str]:
    """Fingerprint of the local source paths named in the `corpus:` section: file hashes, directory listings.

    Only used in the cache key, so a new or edited source file makes the corpus stage run again (the library then
    re-reads just those files); it does not decide what the library reads.
    """
    data, _ = read_yaml(config_path)
    out: dict[str, str] = {}
    for value in _strings(data.get("corpus") or {}):
        p = Path(value)
        if p.is_file():
            out[value] = sha256_file(p)
        elif p.is_dir():
            listing = sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns) for f in p.rglob("*"))
            out[value] = hash_obj(listing)
    return out


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node] if len(node) < 4096 else []
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _markers_under(run: RunDir, stage: str) -> list[str]:
    """Relative paths of completion markers at ``<run>/<stage>/`` and one level below (``tokenizers/<name>/``)."""
    found = []
    for pattern in (f"{stage}/{MARKER}", f"{stage}/*/{MARKER}"):
        for p in run.fs.glob(run.path(pattern)):
            found.append(str(p)[len(run._path) :].lstrip("/"))
    return found


def check_config(group: str, config_path: str) -> None:
    """Validate every section of the config; StageFailed naming file:line, key and the fix otherwise."""
    try:
        REGISTRY.validate_file(config_path)
    except ConfigError as e:
        raise StageFailed(
            f"{group}: the config is invalid:\n{e}\nWhat to do: fix the named key in {config_path} "
            "(`tokenwise config validate` checks it) and run the deployment again."
        ) from None


@task(name="validate-config")
def validate_config(group: str, config_path: str) -> None:
    """Task form of :func:`check_config`, for flows that validate before any stage starts."""
    check_config(group, config_path)


@task(name="hash-inputs", **IO_RETRIES)
def hash_inputs(
    group: str, config_path: str, run_dir: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate the config and hash everything a stage group reads: config, Run-form overrides, upstream outputs,
    code. ``config_path`` is the config the stages read (the effective one when the form changed a knob)."""
    check_config(group, config_path)
    parts = {
        "config_path": config_path,
        "config_hash": config_hash(config_path),
        "overrides": overrides or {},
        "code_version": code_version(),
        "upstream": upstream_hashes(run_dir, group),
        "sources": source_fingerprint(config_path) if group == "corpus" else {},
    }
    parts["key"] = hash_obj({k: v for k, v in parts.items() if k != "config_path"})
    return parts


# -- the stage task ---------------------------------------------------------------------------------------------------


def _outputs_index(run_dir: str, stage: str) -> str:
    return RunDir(run_dir).path(".flows", f"{stage}.json")


def outputs_present(run_dir: str, stage: str) -> bool:
    """True when the markers this stage wrote last time are all still there, unchanged."""
    run = RunDir(run_dir)
    index = _outputs_index(run_dir, stage)
    if not run.fs.exists(index):
        return False
    recorded = read_json(index).get("markers", {})
    return bool(recorded) and all(
        run.fs.exists(run.path(m)) and sha256_file(run.path(m)) == h for m, h in recorded.items()
    )


def stage_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Cache key over (input file hashes, config hash, code version) and the stage entry point."""
    return f"tokenwise-{parameters['stage']['name']}-{hash_obj([parameters['stage'], parameters['inputs']['key']])}"


def stage_task(stage: dict[str, str], run_dir: str, result_storage: str | None = None) -> Any:
    """The stage task, forced to run (refreshing its cache) when the outputs it recorded are missing or changed.

    ``result_storage`` (a directory or fsspec URL) is where its result persists instead of Prefect's default.
    """
    options: dict[str, Any] = {}
    if not outputs_present(run_dir, stage["name"]):
        options["refresh_cache"] = True
    if result_storage:
        options["result_storage"] = storage_block(result_storage)
    return run_stage.with_options(**options) if options else run_stage


def storage_block(url: str) -> Any:
    """A Prefect filesystem block for a local directory or an fsspec URL, saved server-side (Prefect requires it)."""
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem  # heavy: deferred until used

    block = RemoteFileSystem(basepath=url) if "://" in url else LocalFileSystem(basepath=str(Path(url).resolve()))
    block.save(f"tokenwise-results-{hash_obj(url)}", overwrite=True)
    return block


def _all_markers(run_dir: str) -> dict[str, str]:
    run = RunDir(run_dir)
    if not run.fs.exists(run.root):
        return {}
    out = {}
    for p in run.fs.glob(run.path("**", MARKER)):
        rel = str(p)[len(run._path) :].lstrip("/")
        out[rel] = sha256_file(run.path(rel))
    return out


@task(
    name="run-stage",
    task_run_name=_task_run_name,
    cache_key_fn=stage_cache_key,
    persist_result=True,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_retry_io_only,
)
def run_stage(stage: dict[str, str], config_path: str, run_dir: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run one registered stage ``run(config_path, run_dir) -> summary``; return paths and hashes."""

    def call(progress: ProgressArtifact) -> str:
        fn = REGISTRY.stage(stage["name"]).run
        with LogProgress(stage["name"], loggers=(*FORWARDED, fn.__module__), progress=progress):
            return fn(config_path, run_dir)

    return _run_recorded(stage, config_path, run_dir, call)


def run_fanout(stage: dict[str, str], config_path: str, run_dir: str, runner: TaskRunnerConfig) -> dict[str, Any]:
    """Run a stage's per-shard flow (:data:`flows.ray_runner.FANOUT`) as a subflow on ``runner``, recorded like
    run_stage.

    Not a cached task: the subflow checks the library's stage marker first (an unchanged rerun returns the stored
    result without submitting a task), and each shard task skips a shard whose output holds its inputs hash.
    """
    per_shard, summarize = FANOUT[REGISTRY.stage(stage["name"]).run]
    get_run_logger().info("%s: one task per shard, %s", stage["name"], describe(runner))

    def call(progress: ProgressArtifact) -> str:
        subflow = with_task_runner(per_shard, runner)
        return summarize(subflow(run_dir=run_dir, config_path=config_path))

    return _run_recorded(stage, config_path, run_dir, call)


def _run_recorded(
    stage: dict[str, str], config_path: str, run_dir: str, call: Callable[[ProgressArtifact], str]
) -> dict[str, Any]:
    """Run ``call`` (a stage) and record the completion markers it wrote under ``<run>/.flows/<stage>.json``.

    While it runs, its ``shard-*`` outputs drive the stage's progress artifact (:class:`ShardProgress`); ``call``
    gets the same artifact for step progress read from the logs (:class:`LogProgress`).
    """
    progress = ProgressArtifact(stage["name"])
    logger = get_run_logger()
    before = _all_markers(run_dir)
    t0 = time.perf_counter()
    try:
        with ShardProgress(stage["name"], run_dir, progress):
            summary = call(progress)
    except Exception as e:  # re-raised with the stage, the cause and what to do; the traceback stays in the logs
        logger.exception("stage %s failed", stage["name"])
        raise StageFailed(_failure_message(stage, config_path, run_dir, e)) from e
    after = _all_markers(run_dir)
    written = {m: h for m, h in after.items() if before.get(m) != h}
    if not written:  # the library skipped finished work: keep what the stage recorded last time
        index = _outputs_index(run_dir, stage["name"])
        written = read_json(index).get("markers", {}) if RunDir(run_dir).fs.exists(index) else {}
    write_json(_outputs_index(run_dir, stage["name"]), {"stage": stage, "markers": written})
    seconds = round(time.perf_counter() - t0, 2)
    logger.info("%s: %s (%.1fs)", stage["name"], summary, seconds)
    return {
        "stage": stage["name"],
        "summary": str(summary),
        "seconds": seconds,
        "markers": written,
        "run_dir": run_dir,
    }


class ProgressArtifact:
    """The ``tokenwise-<stage>-progress`` artifact of one stage run: created on the first update, then updated.

    Thread-safe (the shard watcher updates it from its own thread); updates closer than ``every_s`` apart are skipped
    unless forced, so a fast stage does not flood the API.
    """

    def __init__(self, stage: str, every_s: float = 2.0):
        self.stage, self.every_s = stage, every_s
        self.artifact_id: Any = None
        self.last = 0.0
        self.lock = threading.Lock()

    def update(self, pct: float, description: str, force: bool = False) -> bool:
        """Publish ``pct`` (0-100) with ``description``; False when rate-limited."""
        with self.lock:
            if not force and self.artifact_id is not None and time.monotonic() - self.last < self.every_s:
                return False
            self.last = time.monotonic()
            pct = max(0.0, min(100.0, pct))
            if self.artifact_id is None:
                key = artifact_key(self.stage, "progress")
                self.artifact_id = create_progress_artifact(pct, key=key, description=description)
            else:
                update_progress_artifact(self.artifact_id, pct, description=description)
            return True


class LogProgress(logging.Handler):
    """Progress of a training stage, read from the library's ``steps=N`` / ``step=i`` log lines.

    Training stages log ``kv(model=..., steps=N)`` when a model starts and ``kv(step=i, loss=...)`` as they go; this
    handler turns them into the stage's progress artifact (``pretrain: target step 250/500``) and forwards every
    library log line (the library packages' loggers and the stage module's own, which a plugin stage outside them
    uses) to the run's logs in the UI. Stages that log no steps get no progress from it.
    """

    def __init__(self, stage: str, loggers: tuple[str, ...] = FORWARDED, progress: ProgressArtifact | None = None):
        super().__init__(logging.INFO)
        self.stage = stage
        self.loggers = tuple(dict.fromkeys(loggers))
        self.total = self.step = 0
        self.model: str | None = None
        self.progress = progress or ProgressArtifact(stage, every_s=5.0)
        self.run_logger = get_run_logger()

    def __enter__(self) -> LogProgress:
        self.levels = {}
        for name in self.loggers:
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.INFO:  # unconfigured in a flow-run process: let INFO through
                logger.setLevel(logging.INFO)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(level)
        if self.total and not any(exc):
            self.progress.update(100.0, f"{self.stage} done", force=True)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        self.run_logger.log(record.levelno, "%s: %s", record.name, msg)
        if m := _STEPS.search(msg):
            model = _MODEL.search(msg)
            self.total, self.step, self.model = int(m.group(1)), 0, model.group(1) if model else None
        elif (m := _STEP.search(msg)) and self.total:
            self.step = int(m.group(1))
        else:
            return
        who = f"{self.stage} {self.model}" if self.model else self.stage
        pct = 100.0 * min(self.step, self.total) / max(1, self.total)
        self.progress.update(pct, f"{who}: step {self.step}/{self.total}", force=self.step >= self.total)


class ShardProgress:
    """Progress of a per-shard stage (score, dedup, decide, tokens): its ``shard-*`` outputs written so far over the
    corpus shards, polled from the run directory by a thread while the stage runs (its workers may be processes or
    Ray tasks, whose logs never reach the flow).

    Counts the shards (``shard-<name>.*``) with a file under the stage's ``writes`` paths (or one level below, minus
    other stages' paths) that is new or changed since the stage started; publishes ``score: 3/8 shards`` as each
    appears. A stage that writes no shard (a skipped rerun, a training stage) publishes nothing.
    """

    def __init__(self, stage: str, run_dir: str, progress: ProgressArtifact, every_s: float = 1.0):
        self.stage, self.run_dir, self.progress, self.every_s = stage, run_dir, progress, every_s
        self.run = RunDir(run_dir)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.seen = 0

    def __enter__(self) -> ShardProgress:
        self.total = self._count(SHARD_SOURCE)
        if stage_writes(self.stage) and self.stage != SHARD_SOURCE and self.total:
            self.before = self._outputs()
            ctx = contextvars.copy_context()  # the run context, so artifacts attach to this flow/task run
            self.thread = threading.Thread(target=ctx.run, args=(self._watch,), daemon=True, name="shard-progress")
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is None:
            return
        self.stop.set()
        self.thread.join()
        if not any(exc) and self._poll():
            self.progress.update(100.0, f"{self.stage} done: {self.seen} shards written", force=True)

    def _watch(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self._poll()
            except OSError:  # a listing racing a rename; the next poll sees it
                continue

    def _poll(self) -> int:
        # a shard counts once any of its outputs is new (score: signals + quarantine, dedup: signatures then rows)
        new = [p for p, stamp in self._outputs().items() if self.before.get(p) != stamp]
        written = len({Path(p).name.split(".")[0] for p in new})
        if written != self.seen:
            self.seen = written
            self.progress.update(100.0 * written / self.total, f"{self.stage}: {written}/{self.total} shards",
                                 force=True)  # fmt: skip
        return self.seen

    def _count(self, path: str) -> int:
        return len(self.run.fs.glob(self.run.path(path, "shard-*")))

    def _outputs(self) -> dict[str, Any]:
        inner = nested_writes(self.stage)
        out = {}
        for w in stage_writes(self.stage):
            for pattern in ((w, "shard-*"), (w, "*", "shard-*")):
                for p in self.run.fs.glob(self.run.path(*pattern)):
                    rel = str(p)[len(self.run._path) :].lstrip("/")
                    if not any(rel.startswith(n + "/") for n in inner):
                        info = self.run.fs.info(p)
                        out[rel] = (info.get("mtime") or info.get("LastModified"), info.get("size"))
        return out


SHARD_SOURCE = "corpus"  # per-shard stages write one output per corpus shard


def stage_writes(stage: str) -> tuple[str, ...]:
    """The run-dir paths a registered stage writes (none for an unknown stage)."""
    try:
        return REGISTRY.stage(stage).writes
    except ValueError:
        return ()


def nested_writes(stage: str) -> list[str]:
    """Other stages' paths inside this stage's (``signals/dedup`` inside ``signals``): not this stage's shards."""
    mine = stage_writes(stage)
    return [p for s in REGISTRY.stages if s.name != stage for p in s.writes
            if any(p.startswith(w + "/") for w in mine)]  # fmt: skip


_STEPS = re.compile(r"\bsteps=(\d+)")
_STEP = re.compile(r"\bstep=(\d+)")
_MODEL = re.compile(r"\bmodel=(\S+)")


def _failure_message(stage: dict[str, str], config_path: str, run_dir: str, e: BaseException) -> str:
    cause = str(e) or type(e).__name__
    if isinstance(e, ConfigError):
        todo = f"fix the named key in {config_path} and run the deployment again"
    elif isinstance(e, TaskRunnerError):
        todo = f"do what the message says, or set `prefect: task_runner: {{kind: thread}}` in {config_path}"
    elif isinstance(e, FileNotFoundError | ModuleNotFoundError):
        todo = "check the path or the upstream stage named above exists (run the earlier stage first), then rerun"
    else:
        todo = (
            "fix or remove the named file/record (bad records are quarantined by the library when it can), "
            "then run the deployment again; finished stages are skipped"
        )
    return (
        f"stage {stage['name']} ({stage['target']}) failed: {type(e).__name__}: {cause}\n"
        f"config: {config_path}  run: {run_dir}\nWhat to do: {todo}."
    )


# -- artifacts --------------------------------------------------------------------------------------------------------


def artifact_key(stage: str, what: str) -> str:
    """Stable artifact key ``tokenwise-<stage>-<what>`` (lowercase, dashes), so runs build a history."""
    raw = f"tokenwise-{stage}-{what}".lower()
    return "".join(c if c.isalnum() else "-" for c in raw).strip("-")


def rows_of(obj: Any, key_name: str = "key") -> list[dict[str, Any]]:
    """Flatten a list of dicts, or a dict of dicts / of scalars, into table rows (at most MAX_ROWS)."""
    if isinstance(obj, list):
        rows = [r if isinstance(r, dict) else {"value": r} for r in obj]
    elif isinstance(obj, dict):
        rows = [
            {key_name: k, **{ck: cv for ck, cv in v.items() if not isinstance(cv, dict | list)}}
            if isinstance(v, dict)
            else {key_name: k, "value": v}
            for k, v in obj.items()
        ]
    else:
        rows = []
    return [{k: _scalar(v) for k, v in r.items()} for r in rows[:MAX_ROWS]]


def _scalar(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dict | list):
        return str(v)[:200]
    return v


@task(name="publish-summary", **IO_RETRIES)
def publish_summary(group: str, run_dir: str, results: list[dict[str, Any]], inputs: dict[str, Any]) -> str:
    """Markdown artifact of what the stage group did, plus the HTML report link when the report exists."""
    lines = [f"# tokenwise {group}", "", f"run: `{run_dir}`  config: `{inputs['config_path']}`", ""]
    lines += ["| stage | summary | seconds |", "|---|---|---|"]
    lines += [f"| {r['stage']} | {r['summary']} | {r['seconds']} |" for r in results]
    lines += ["", f"inputs key `{inputs['key']}` (config `{inputs['config_hash']}`, code `{inputs['code_version']}`)"]
    if inputs.get("overrides"):
        lines += ["", f"Run form overrides: `{inputs['overrides']}` (artifact `{artifact_key(group, 'settings')}`)"]
    create_markdown_artifact("\n".join(lines), key=artifact_key(group, "summary"), description=f"{group} summary")
    publish_report_link(run_dir)
    return artifact_key(group, "summary")


def publish_report_link(run_dir: str) -> str | None:
    """Link artifact to ``<run>/report/index.html`` when it exists."""
    run = RunDir(run_dir)
    if not run.exists("report", "index.html"):
        return None
    path = run.path("report", "index.html")
    link = path if "://" in path else Path(path).resolve().as_uri()
    create_link_artifact(link, link_text="curation report", key=artifact_key("report", "link"))
    return link


def publish_table(group: str, what: str, rows: list[dict[str, Any]], description: str) -> str | None:
    """Table artifact ``tokenwise-<group>-<what>`` (≤ MAX_ROWS rows); nothing when there are no rows."""
    if not rows:
        return None
    key = artifact_key(group, what)
    create_table_artifact(rows[:MAX_ROWS], key=key, description=description)
    return key


def read_json_if(run_dir: str, *parts: str) -> Any | None:
    """JSON at ``<run>/<parts>`` or None when absent (artifacts are best-effort views of the outputs)."""
    run = RunDir(run_dir)
    return read_json(run.path(*parts)) if run.exists(*parts) else None


def diff_sources(before: dict[str, str], after: dict[str, str]) -> list[dict[str, str]]:
    """Rows of new / changed / removed source files between two manifests (unchanged ones summarised as one row)."""
    rows = [{"file": f, "change": "new"} for f in sorted(after.keys() - before.keys())]
    rows += [{"file": f, "change": "changed"} for f in sorted(after.keys() & before.keys()) if after[f] != before[f]]
    rows += [{"file": f, "change": "removed"} for f in sorted(before.keys() - after.keys())]
    same = sum(1 for f in after.keys() & before.keys() if after[f] == before[f])
    rows.append({"file": f"({same} files)", "change": "unchanged"})
    return rows


def project_env() -> dict[str, str]:
    """Environment for subprocesses that import the project (repo on PYTHONPATH)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def read_csv_if(run_dir: str, *parts: str) -> list[dict[str, Any]]:
    """Rows of a CSV at ``<run>/<parts>`` (at most MAX_ROWS; numbers parsed), or [] when absent."""
    run = RunDir(run_dir)
    if not run.exists(*parts):
        return []
    with run.fs.open(run.path(*parts), "r", encoding="utf-8") as f:
        rows = itertools.islice(csv.DictReader(f), MAX_ROWS)
        return [{k: _number(v) for k, v in row.items()} for row in rows]


def _number(v: str) -> Any:
    try:
        return round(float(v), 4) if any(c in v for c in ".eE") else int(v)
    except ValueError:
        return v


def glob_json(run_dir: str, *pattern: str) -> list[tuple[list[str], Any]]:
    """(path parts relative to the run, parsed JSON) of each file matching ``<run>/<pattern>``, sorted."""
    run = RunDir(run_dir)
    out = []
    for p in sorted(run.fs.glob(run.path(*pattern))):
        rel = str(p)[len(run._path) :].lstrip("/").split("/")
        out.append((rel, read_json(run.path(*rel))))
    return out
