"""A real Prefect server on a free loopback port: serve the deployments, run them through the REST API like the UI.

One `tokenwise prefect up --config configs/demo.yaml` (the shipped config; only the port, the home and the run dir
differ) for the whole module: a server with a temporary SQLite PREFECT_HOME plus the `serve` process, stopped with
Ctrl-C (SIGINT) at the end; the test checks both children it started are gone. Every deployment is triggered the way
the UI's Run button does it, with the form's defaults (the shipped config's values); the corpus and curate runs that
complete change a few form knobs so they read a small source list. A tiny config covers the failure and pool paths.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import _paths
import httpx
import pytest
import yaml

from flows.deployments import deployment_flows
from flows.server import free_port, stop
from flows.tasks import REPO

pytestmark = pytest.mark.slow
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
ARTIFACTS = Path(os.environ.get("TOKENWISE_TEST_ARTIFACTS", _paths.ARTIFACTS))

CLI = "from tokenwise.cli import main; main()"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
TINY = """\
run:
  seed: 0
corpus:
  sources:
    - type: gettext
      languages: [de, fr]
      catalogs: [adduser]
      min_words: 2
    - type: stdlib
      max_modules: 3
  tasks: 1
  workers: 1
prefect:
  refresh_cron: "0 3 * * *"
  health_timeout_s: 240
"""


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    """(api client, ui url, tmp dir) of `tokenwise prefect up` on a free port: a fresh server serving every deployment.

    Ctrl-C (SIGINT) at the end must stop the server and the serve process it started, by PID.
    """
    tmp = tmp_path_factory.mktemp("prefect")
    (tmp / "tiny.yaml").write_text(TINY)
    config = DEMO_CONFIG
    port = free_port()
    env = {**os.environ, "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "TOKENWISE_PROGRESS": "0",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # the serve process picks up triggered runs within 2 s, not 10
    cmd = [sys.executable, "-c", CLI, "prefect", "up", "--config", str(config), "--run", str(tmp / "run"),
           "--port", str(port), "--home", str(tmp / "home")]  # fmt: skip
    log = (tmp / "up.log").open("w")
    up = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    try:
        ui_url = _wait_for_line(up, tmp / "up.log", "UI: ").split()[1]
        assert ui_url == f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=f"{ui_url}/api", timeout=30)
        _wait_for_deployments(api, up, tmp / "home" / "serve.log")
        yield api, ui_url, tmp
    finally:
        pids = [int(p) for p in re.findall(r"PID (\d+)", (tmp / "up.log").read_text())]
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        finally:
            stop(up)
            log.close()
        assert len(pids) == 2 and not [p for p in pids if _alive(p)], f"children left running: {pids}"


def _wait_for_line(proc: subprocess.Popen, log: Path, prefix: str, timeout_s: float = 150) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith(prefix)]
        if lines:
            return lines[0]
        assert proc.poll() is None, f"`tokenwise prefect up` exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise TimeoutError(f"no {prefix!r} line after {timeout_s}s:\n{log.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _wait_for_deployments(api: httpx.Client, serving, log: Path, timeout_s: float = 150) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        assert serving.poll() is None, f"serve process exited:\n{log.read_text()[-3000:]}"
        if len(api.post("/deployments/filter", json={}).json()) == len(deployment_flows()):
            time.sleep(2.0)  # serve registers, then starts polling for runs
            return
        time.sleep(1.0)
    raise TimeoutError(f"deployments not registered after {timeout_s}s:\n{log.read_text()[-3000:]}")


def deployment(api: httpx.Client, name: str) -> dict:
    found = [d for d in api.post("/deployments/filter", json={}).json() if d["name"] == name]
    assert found, f"no deployment {name!r}"
    return found[0]


def trigger_from_ui(api: httpx.Client, name: str, params: dict | None = None) -> str:
    """POST /deployments/{id}/create_flow_run as the UI's Run button does; returns the flow run id.

    ``params`` None submits the form untouched (the deployment's defaults, as the UI does).
    """
    dep = deployment(api, name)
    body = {"parameters": {} if params is None else {"params": params}}
    body["state"] = {"type": "SCHEDULED", "message": "Run from the Prefect UI"}
    for _ in range(30):  # SQLite under a loaded 2-core machine answers 503 now and then; the UI's user clicks again
        r = api.post(f"/deployments/{dep['id']}/create_flow_run", json=body)
        if r.status_code != 503:
            break
        time.sleep(1.0)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def run_from_ui(api: httpx.Client, name: str, params: dict | None, timeout_s: float = 150) -> dict:
    """Trigger a deployment like the UI, then poll until the run reaches a final state."""
    run_id = trigger_from_ui(api, name, params)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            run = api.get(f"/flow_runs/{run_id}").json()
        except httpx.TimeoutException:  # a busy SQLite server (the machine under load) answers the next poll
            continue
        if run["state_type"] in FINAL:
            return run
        time.sleep(1.0)
    raise TimeoutError(f"flow run {run_id} of {name} not finished after {timeout_s}s: {run['state_type']}")


def artifacts_of(api: httpx.Client, run_id: str) -> dict[str, dict]:
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    return {a["key"]: a for a in api.post("/artifacts/filter", json=body).json() if a["key"]}


SMALL_SOURCES = {"languages": ["de", "fr"], "catalogs": ["adduser"], "max_stdlib_modules": 3, "text_dir_max_files": 5}


@pytest.fixture(scope="module")
def corpus_run(prefect):
    """The corpus deployment from the UI: the shipped config, four form fields changed to read a small source list."""
    api, _, tmp = prefect
    params = {**_defaults(api, "corpus"), "run_dir": str(tmp / "run"), **SMALL_SOURCES}
    return run_from_ui(api, "corpus", params), params


@pytest.fixture(scope="module")
def curate_run(prefect, corpus_run):
    """The curate deployment from the UI on that corpus: the shipped config, one rule threshold changed."""
    api, _, tmp = prefect
    params = {**_defaults(api, "curate"), "run_dir": str(tmp / "run"), "lang_low_score": 0.5}
    return run_from_ui(api, "curate", params, timeout_s=300), params


def test_corpus_deployment_run_from_api_completes_with_outputs_and_artifacts(prefect, corpus_run):
    api, _, tmp = prefect
    run, params = corpus_run
    assert run["state_type"] == "COMPLETED", run["state"]["message"]
    assert run["name"].startswith("corpus-run-demo-")
    out = Path(params["run_dir"]) / "corpus"
    assert (out / "manifest.json").exists() and (out / "_DONE.json").exists()
    assert list(out.glob("shard-*.parquet"))
    arts = artifacts_of(api, run["id"])
    for key in ("tokenwise-corpus-summary", "tokenwise-corpus-by-lang", "tokenwise-corpus-changes"):
        assert key in arts, sorted(arts)
    assert {"de", "fr", "en"} <= {row["lang"] for row in _table(arts["tokenwise-corpus-by-lang"])}
    assert arts["tokenwise-corpus-progress"]["data"] == 100.0
    settings = yaml.safe_load((out.parent / ".flows" / "corpus-settings.yaml").read_text())
    assert settings["overrides"] == SMALL_SOURCES and settings["config_path"] == str(DEMO_CONFIG)
    effective = yaml.safe_load((out.parent / ".flows" / "corpus-config.yaml").read_text())
    assert effective["corpus"]["sources"][1] == {**_demo_source("stdlib"), "max_modules": 3}
    assert "| max_stdlib_modules | `corpus.sources[type=stdlib].max_modules` | `3` | run form |" in (
        arts["tokenwise-corpus-settings"]["data"]
    )


def _demo_source(kind: str) -> dict:
    return next(s for s in yaml.safe_load(DEMO_CONFIG.read_text())["corpus"]["sources"] if s["type"] == kind)


def test_curate_run_from_the_ui_shows_settings_shard_progress_and_links_the_report(prefect, curate_run):
    api, _, tmp = prefect
    run, params = curate_run
    assert run["state_type"] == "COMPLETED", run["state"]["message"]
    out = Path(params["run_dir"])
    effective = yaml.safe_load((out / ".flows" / "curate-config.yaml").read_text())
    assert effective["decide"]["rules"]["lang_low_score"]["threshold"] == 0.5
    settings = yaml.safe_load((out / ".flows" / "curate-settings.yaml").read_text())
    assert settings["overrides"] == {"lang_low_score": 0.5}
    assert (out / "curated" / "_DONE.json").exists() and (out / "plans" / "_DONE.json").exists()
    arts = artifacts_of(api, run["id"])
    md = arts["tokenwise-curate-settings"]["data"]
    assert "| lang_low_score | `decide.rules.lang_low_score.threshold` | `0.5` | run form |" in md
    assert "| top_2_gram | `decide.rules.top_2_gram.threshold` | `0.5` | config |" in md
    n = len(list((out / "corpus").glob("shard-*.parquet")))
    for stage in ("score", "dedup", "decide", "tokens"):  # per-shard stages: progress from their shard outputs
        progress = arts[f"tokenwise-{stage}-progress"]
        assert progress["data"] == 100.0 and progress["description"] == f"{stage} done: {n} shards written", stage
    link = arts["tokenwise-report-link"]["data"]
    report = out / "report" / "index.html"
    assert report.exists() and report.as_uri() in link, link


def _table(artifact: dict) -> list[dict]:
    import json

    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def task_runs_of(api: httpx.Client, run_id: str) -> list[dict]:
    return api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()


def wait_validated(api: httpx.Client, run_id: str, timeout_s: float = 150) -> dict:
    """Poll a flow run until its config-validating task (hash-inputs / validate-config) completed or it ended."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        run = api.get(f"/flow_runs/{run_id}").json()
        tasks = task_runs_of(api, run_id)
        done = [t for t in tasks if t["name"].startswith(VALIDATING) and t["state_type"] == "COMPLETED"]
        if done or run["state_type"] in FINAL:
            return run
        time.sleep(1.0)
    raise TimeoutError(f"flow run {run_id} did not validate its config in {timeout_s}s: {run['state_type']}")


def request_cancel(api: httpx.Client, run_id: str) -> None:
    """Cancel a flow run as the UI's Cancel button does (the runner stops its process on its next poll). Not forced:
    a run that ended meanwhile keeps its final state (forced, CANCELLING replaced it and no runner process was left
    to finish the cancellation: the run stayed CANCELLING)."""
    r = api.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": False})
    r.raise_for_status()


def wait_final(api: httpx.Client, run_id: str, timeout_s: float = 60) -> str:
    """Poll a flow run until it reaches a final state; returns its state type (the last seen one on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        state = api.get(f"/flow_runs/{run_id}").json()["state_type"]
        if state in FINAL:
            return state
        time.sleep(1.0)
    return state


VALIDATING = ("hash-inputs", "validate-config")
QUICK = {"report", "corpus", "curate"}  # run to COMPLETED; the rest must get past config validation


def test_every_deployment_runs_from_the_ui_with_the_shipped_config(prefect, corpus_run, curate_run):
    """The UI's Run button on every deployment, form defaults = configs/demo.yaml: no import or config failure.

    report (on an empty run dir), corpus (on a small source list) and curate (on that corpus) must complete; every
    other deployment must validate the shipped config and start its first stage; runs still going are cancelled.
    """
    DEPLOYMENTS = deployment_flows()

    api, _, tmp = prefect
    assert {d["name"] for d in api.post("/deployments/filter", json={}).json()} == set(DEPLOYMENTS)
    assert corpus_run[0]["state_type"] == curate_run[0]["state_type"] == "COMPLETED"
    empty = tmp / "empty-run"
    report = run_from_ui(api, "report", {"config_path": str(DEMO_CONFIG), "run_dir": str(empty)})
    assert report["state_type"] == "COMPLETED", report["state"]["message"]
    assert (empty / "report" / "index.html").exists()
    cancelling = {}
    for name in sorted(set(DEPLOYMENTS) - QUICK):  # one at a time: a run is cancelled once it validated
        run_id = trigger_from_ui(api, name, {**_defaults(api, name), "run_dir": str(tmp / f"ui-{name}")})
        run = wait_validated(api, run_id)
        msg = (run["state"] or {}).get("message") or ""
        assert "ModuleNotFoundError" not in msg and "config is invalid" not in msg, (name, msg)
        validated = [t for t in task_runs_of(api, run_id) if t["name"].startswith(VALIDATING)]
        assert any(t["state_type"] == "COMPLETED" for t in validated), describe(api, name, run_id)
        if run["state_type"] not in FINAL:  # the next deployment starts while this one is being cancelled
            request_cancel(api, run_id)
            cancelling[name] = run_id
    for name, run_id in cancelling.items():
        assert wait_final(api, run_id) in FINAL, describe(api, name, run_id)


def describe(api: httpx.Client, name: str, run_id: str) -> str:
    """A failed run's state, task runs and last log lines, for the assertion message."""
    run = api.get(f"/flow_runs/{run_id}").json()
    tasks = [(t["name"], t["state_type"]) for t in task_runs_of(api, run_id)]
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_DESC", "limit": 30}
    logs = [f"{lg['level']}: {lg['message'][:400]}" for lg in reversed(api.post("/logs/filter", json=body).json())]
    return (f"{name}: {run['state_type']} {run['state_name']}: {(run['state'] or {}).get('message')}\n"
            f"tasks: {tasks}\nlogs:\n" + "\n".join(logs))


def _defaults(api: httpx.Client, name: str) -> dict:
    """The Run form's initial values: the deployment's parameters."""
    return dict(deployment(api, name)["parameters"]["params"])


def test_failing_run_ends_failed_with_readable_message(prefect):
    api, _, tmp = prefect
    bad = tmp / "bad.yaml"
    bad.write_text(
        TINY.replace(
            "type: stdlib\n      max_modules: 3", "type: text_dir\n      name: docs\n      paths: [/nonexistent/docs]"
        )
    )
    run = run_from_ui(api, "corpus", {"config_path": str(bad), "run_dir": str(tmp / "bad-run")})
    assert run["state_type"] == "FAILED"
    msg = run["state"]["message"]
    assert str(bad) in msg and "/nonexistent/docs" in msg and "does not exist" in msg, msg
    assert "What to do" in msg, msg
    assert not (tmp / "bad-run" / "corpus" / "_DONE.json").exists()


def test_refresh_schedule_creates_scheduled_runs(prefect):
    api, _, _ = prefect
    dep = deployment(api, "corpus-refresh")
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 3 * * *"]
    body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    t0, runs = time.monotonic(), []
    while time.monotonic() - t0 < 60 and not runs:
        runs = api.post("/flow_runs/filter", json=body).json()
        time.sleep(1.0)
    assert runs, "the scheduler created no runs for the corpus-refresh cron"
    assert all(r["expected_start_time"][11:16] == "03:00" for r in runs)


def test_gpu_deployments_are_tagged_and_forms_have_defaults(prefect):
    api, _, tmp = prefect
    for name in ("finetune", "quantize", "measure", "corpus"):
        dep = deployment(api, name)
        assert ("gpu" in dep["tags"]) == (name != "corpus"), (name, dep["tags"])
        assert dep["parameters"]["params"]["config_path"] == str(DEMO_CONFIG)
        assert dep["parameters"]["params"]["run_dir"] == str(tmp / "run")
        assert dep["parameter_openapi_schema"]["properties"]["params"]["description"]
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    knobs = {name: _defaults(api, name) for name in ("finetune", "tokenizer", "measure")}
    assert (knobs["finetune"]["steps"], knobs["finetune"]["rank"]) == (demo["lora"]["steps"], demo["lora"]["rank"])
    assert knobs["tokenizer"]["vocab_size"] == demo["tokenizer"]["train"][0]["vocab_size"]
    assert knobs["measure"]["stacks"] == [s["name"] for s in demo["measure"]["stacks"]]


def test_form_value_of_the_wrong_type_is_refused_before_a_run_exists(prefect):
    """Prefect checks the form against the flow's parameter schema: a string for an integer knob is a 409, no run."""
    api, _, tmp = prefect
    dep = deployment(api, "finetune")
    params = {**_defaults(api, "finetune"), "run_dir": str(tmp / "typo-run"), "steps": "many"}
    r = api.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"params": params}})
    assert r.status_code == 409 and "params.steps" in r.text, r.text
    assert not (tmp / "typo-run").exists()


def test_out_of_range_form_value_fails_the_run_at_once_with_the_section_message(prefect):
    """A value the schema lets through but the section model refuses: FAILED with `lora.steps: ...`, no writes."""
    api, _, tmp = prefect
    params = {**_defaults(api, "finetune"), "run_dir": str(tmp / "bad-form-run"), "steps": 0}
    run = run_from_ui(api, "finetune", params)
    assert run["state_type"] == "FAILED"
    msg = run["state"]["message"]
    assert "run form: lora.steps: Input should be greater than or equal to 1 (got 0)" in msg, msg
    assert "What to do" in msg and "nothing was written" in msg
    assert not (tmp / "bad-form-run").exists()
    assert not [t for t in task_runs_of(api, run["id"]) if t["name"].startswith(("hash-inputs", "run-stage"))]


# Prefect 3.9's UI itself requests /favicon.ico and /ico/undefined.svg (a state icon before the state loads): 404s
# on every page, even of a bare flow run; anything else logged as an error fails the test.
UI_OWN_404S = ("/favicon.ico - Failed to load resource", "/ico/undefined.svg - Failed to load resource")


def test_ui_renders_the_completed_run(prefect, curate_run):
    """Headless Chromium on the UI-triggered curate run's page: Completed, its artifacts (the report link) listed, its
    settings artifact rendered, no console errors."""
    from browser_util import console_errors, open_browser, require_browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    require_browser()
    api, ui_url, _ = prefect
    run, _ = curate_run
    assert run["state_type"] == "COMPLETED", run["state"]["message"]
    settings_id = artifacts_of(api, run["id"])["tokenwise-curate-settings"]["id"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    drv = open_browser(1400, 1000)
    shots, errors = {}, []
    try:
        drv.get(f"{ui_url}/runs/flow-run/{run['id']}")
        WebDriverWait(drv, 60).until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), run["name"]))
        WebDriverWait(drv, 30).until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Completed"))
        time.sleep(1.0)  # charts and the logs pane render after the text
        shots["run"] = ARTIFACTS / "prefect-ui-flow-run.png"
        drv.save_screenshot(str(shots["run"]))
        errors += console_errors(drv, ignore=UI_OWN_404S)
        next(tab for tab in drv.find_elements(By.CSS_SELECTOR, "li.p-tab") if tab.text.strip() == "Artifacts").click()
        listed = ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "tokenwise-report-link")  # flow-level
        WebDriverWait(drv, 60).until(listed)
        time.sleep(1.0)
        shots["artifacts"] = ARTIFACTS / "prefect-ui-flow-run-artifacts.png"
        drv.save_screenshot(str(shots["artifacts"]))
        errors += console_errors(drv, ignore=UI_OWN_404S)
        drv.get(f"{ui_url}/artifacts/artifact/{settings_id}")  # the settings markdown, rendered
        shown = ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "decide.rules.lang_low_score.threshold")
        WebDriverWait(drv, 60).until(shown)
        time.sleep(1.0)
        shots["settings"] = ARTIFACTS / "prefect-ui-settings-artifact.png"
        drv.save_screenshot(str(shots["settings"]))
        errors += console_errors(drv, ignore=UI_OWN_404S)
    finally:
        drv.quit()
    assert not errors, errors
    for shot in shots.values():
        assert distinct_pixel_bytes(shot.read_bytes()) > 20, f"{shot} looks blank"


def distinct_pixel_bytes(png: bytes) -> int:
    """Distinct byte values in the decompressed image data (a blank page has a handful)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def test_failure_automation_and_work_pool_deployments(prefect):
    """Runs last: deploying to pools replaces the served deployments of the same names."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import create_failure_automation, deploy_to_pools

    api, _, tmp = prefect
    with temporary_settings(updates={PREFECT_API_URL: str(api.base_url).rstrip("/")}):
        automation_id = create_failure_automation("http://127.0.0.1:9/hook")
        deploy_to_pools(str(tmp / "tiny.yaml"), str(tmp / "run"), "process")
    automation = api.get(f"/automations/{automation_id}").json()
    assert set(automation["trigger"]["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert automation["actions"][0]["type"] == "send-notification"
    pools = {p["name"]: p for p in api.post("/work_pools/filter", json={}).json()}
    assert {"tokenwise-cpu", "gpu"} <= set(pools)
    finetune, corpus = deployment(api, "finetune"), deployment(api, "corpus")
    assert finetune["work_pool_name"] == "gpu" and corpus["work_pool_name"] == "tokenwise-cpu"
    assert finetune["job_variables"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_pool_deployment_runs_on_a_process_worker(prefect):
    """A work-pool deployment like `tokenwise prefect deploy` makes (module-path entrypoint, no source checkout) runs
    on a real process worker started in another directory. Its own name: the serve process of `prefect up` polls the
    deployments it registered and would pick up a run of theirs before the worker."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.types.entrypoint import EntrypointType

    from flows.deployments import CPU_JOB_VARIABLES, default_parameters, deployment_flows
    from flows.server import server_env

    api, ui_url, tmp = prefect
    flow = deployment_flows()["report"][0]
    params = {"config_path": str(DEMO_CONFIG), "run_dir": str(tmp / "pool-run")}
    with temporary_settings(updates={PREFECT_API_URL: str(api.base_url).rstrip("/")}):
        flow.deploy(
            name="report-on-worker",
            work_pool_name="tokenwise-cpu",
            job_variables=CPU_JOB_VARIABLES,
            parameters=default_parameters("report", params["config_path"], params["run_dir"]),
            entrypoint_type=EntrypointType.MODULE_PATH,
            build=False,
            push=False,
            print_next_steps=False,
        )
    dep = deployment(api, "report-on-worker")
    assert dep["work_pool_name"] == "tokenwise-cpu" and ".py:" not in dep["entrypoint"], dep["entrypoint"]
    run_id = trigger_from_ui(api, "report-on-worker", params)
    env = server_env(tmp / "home", "127.0.0.1", int(ui_url.rsplit(":", 1)[1]))
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tokenwise-cpu", "--type", "process",
           "--run-once"]  # fmt: skip
    worker = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=240)
    run = api.get(f"/flow_runs/{run_id}").json()
    assert run["state_type"] == "COMPLETED", (run["state"], (worker.stdout + worker.stderr)[-3000:])
    assert (tmp / "pool-run" / "report" / "index.html").exists()
