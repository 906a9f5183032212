"""A local Prefect server plus the process serving tokenwise's deployments, started and stopped by PID.

`tokenwise prefect up` uses :func:`up`; the real-server tests use :func:`start_server` / :func:`start_serving` /
:func:`stop` directly. Both children run in their own process group so stopping them also stops their workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from flows.tasks import REPO, project_env


@dataclass
class Server:
    """A running Prefect server: its process, API URL, UI URL and home directory."""

    proc: subprocess.Popen
    api_url: str
    ui_url: str
    home: str
    log: Path


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_env(home: str | Path, host: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a local server and its clients: SQLite under ``home``, API and UI pointing at host:port.

    PREFECT_SERVER_API_HOST/PORT and PREFECT_UI_API_URL are set as well as the CLI flags, otherwise the UI bundle calls
    the default port's API.
    """
    api = f"http://{host}:{port}/api"
    env = project_env()
    env.update(
        PREFECT_HOME=str(Path(home).resolve()),
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_API_URL=api,
        PREFECT_UI_API_URL=api,
        PREFECT_UI_URL=f"http://{host}:{port}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
        PREFECT_LOCAL_STORAGE_PATH=str(Path(home).resolve() / "storage"),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{Path(home).resolve() / 'prefect.db'}",
    )
    env.update(extra or {})
    return env


def start_server(home: str | Path, host: str = "127.0.0.1", port: int | None = None, **extra: str) -> Server:
    """Start ``prefect server start`` in its own process group; returns once it is spawned (see wait_healthy)."""
    port = port or free_port(host)
    Path(home).mkdir(parents=True, exist_ok=True)
    env = server_env(home, host, port, extra)
    log = Path(home) / "server.log"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    return Server(proc, env["PREFECT_API_URL"], env["PREFECT_UI_URL"], str(home), log)


def wait_healthy(server: Server, timeout_s: float = 60.0) -> float:
    """Poll ``/api/health`` until it answers; returns the seconds it took. Raises with the server log tail."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if server.proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited ({server.proc.returncode}):\n{_tail(server.log)}")
        try:
            if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server not healthy after {timeout_s:.0f}s at {server.api_url}:\n{_tail(server.log)}")


def start_serving(server: Server, config_path: str, run_dir: str) -> subprocess.Popen:
    """Start the process that registers and serves every deployment against ``server``."""
    env = server_env(server.home, *_host_port(server.api_url))
    log = Path(server.home) / "serve.log"
    cmd = [sys.executable, "-m", "flows.deployments", "serve", "--config", config_path, "--run", run_dir]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


def stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Stop a child we started and its process group: SIGTERM, then SIGKILL after ``timeout_s``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def up(config_path: str, run_dir: str, host: str, port: int, home: str, timeout_s: float = 60.0) -> None:
    """Start the server, wait for health, serve the deployments, print the UI URL; Ctrl-C stops both children."""
    server = start_server(home, host, port)
    serving = None
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the children like Ctrl-C does
    try:
        took = wait_healthy(server, timeout_s)
        serving = start_serving(server, config_path, run_dir)
        home_dir = Path(home).resolve()
        print(f"Prefect server healthy in {took:.1f}s (PID {server.proc.pid}, PREFECT_HOME={home_dir})", flush=True)
        print(f"serving tokenwise deployments (PID {serving.pid}); logs in {home_dir}/serve.log", flush=True)
        print(f"UI: {server.ui_url}   API: {server.api_url}   Ctrl-C stops everything started here", flush=True)
        while server.proc.poll() is None and serving.poll() is None:
            time.sleep(1.0)
        print("a child exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr)
    finally:
        if serving is not None:
            stop(serving)
        stop(server.proc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _host_port(api_url: str) -> tuple[str, int]:
    hostport = api_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
