"""Secrets and files: API keys only from the environment and never written anywhere; user names never escape the run.

A real measurement (two tiny served stacks behind an API key, on 127.0.0.1) runs with every log captured at DEBUG;
then the logs, every file of the run (measure ledger, summaries, report, CSVs) and the Prefect artifacts the flows
would publish are scanned for the key. Names that become paths go through :func:`tokenwise.rundir.safe_join`.
"""

import logging
import textwrap
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from serving.api.config import ServeConfig
from serving.decode.tiny import make_tiny_llama, stdlib_texts, train_tokenizer
from serving.measure.config import MeasureConfig
from tokenwise.config import ConfigError, load_section
from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.rundir import RunDir, UnsafePathError, safe_join
from tokenwise.stages import REGISTRY

KEY = "sk-tw-test-3f9c2a7be41d4e0b9a55c0ffee1234"
WRONG_KEY = "sk-tw-wrong-88d1e0aa77c34b0f9e2d5a6b7c8d9e0f"
ENV = "TOKENWISE_TEST_API_KEYS"
LOGGERS = ("", "tokenwise", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "prefect")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A run measured against servers that require the key; logs captured from every logger at DEBUG."""
    from serving.measure.run import run_measure

    root = tmp_path_factory.mktemp("secrets")
    texts = stdlib_texts(30)
    tok = train_tokenizer(texts, root / "tok", vocab_size=300)
    make_tiny_llama(root / "run/models/small", tok, 32, 1, seed=1)
    make_tiny_llama(root / "run/models/large", tok, 32, 1, seed=2)
    docs = [{"id": f"d{i}", "text": t, "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
            for i, t in enumerate(stdlib_texts(120, skip=30))]  # fmt: skip
    (root / "run/curated").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(docs, schema=CORPUS_SCHEMA), root / "run/curated/shard-00000.parquet")
    models = """
          - {name: small, path: "{run}/models/small", price_input_per_1m: 0.1, price_output_per_1m: 0.2}
          - {name: large, path: "{run}/models/large", price_input_per_1m: 1.0, price_output_per_1m: 2.0}"""
    cfg = root / "measure.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        serve:
          api_key_env: {ENV}
          router: {{threshold: -3.0, preview_tokens: 2}}
          models:{models}
        measure:
          api_key_env: {ENV}
          requests: 3
          prompt_bytes: 100
          reference_bytes: 60
          max_tokens: 4
          concurrency: 2
          stacks:
            - {{name: baseline, lever: baseline, model: large, serve_models: [small, large]}}
            - {{name: routed, lever: routing, model: auto, serve_models: [small, large]}}
        """)
    )
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = {}
    for name in LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV, KEY)
    try:
        summary = run_measure(str(cfg), str(root / "run"))
    finally:
        mp.undo()
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(saved[name])
    return root, cfg, summary, handler.lines


def _files_with(root: Path, needle: str) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            hits.append(str(p.relative_to(root)))
    return hits


def test_measurement_behind_a_key_leaves_no_key_in_logs_ledger_or_configs(measured):
    root, cfg, summary, lines = measured
    rows = pq.read_table(root / "run/measure/ledger.parquet").to_pylist()
    assert rows and all(r["status"] == "success" for r in rows), "requests with the key from the env must succeed"
    assert len(lines) > 5, "log capture saw nothing; the scan below would prove nothing"
    assert not [x for x in lines if KEY in x]
    assert KEY not in cfg.read_text() and KEY not in repr(summary)
    assert _files_with(root, KEY) == []


def test_report_and_prefect_artifacts_carry_no_key(measured, monkeypatch):
    import flows.common
    import flows.tasks
    from flows.measure_flow import publish_measure
    from flows.report_flow import publish_report
    from flows.serve_flow import publish_serve
    from report.build import build_report

    root, _, _, _ = measured
    run = str(root / "run")
    build_report(run)
    published: list[str] = []
    monkeypatch.setattr(flows.tasks, "create_table_artifact", lambda rows, **kw: published.append(repr((rows, kw))))
    md = lambda text, **kw: published.append(repr((text, kw)))  # noqa: E731
    monkeypatch.setattr(flows.tasks, "create_markdown_artifact", md)
    monkeypatch.setattr(flows.common, "create_markdown_artifact", md)
    monkeypatch.setattr(flows.tasks, "create_link_artifact", lambda link, **kw: published.append(repr((link, kw))))
    for publish in (publish_measure, publish_serve, publish_report):
        publish("secrets", run)
    assert (root / "run/report/index.html").is_file() and published, "nothing was published: the check is empty"
    assert not [p for p in published if KEY in p]
    assert _files_with(root / "run", KEY) == []


def test_server_takes_keys_only_from_env_and_never_echoes_them(measured, monkeypatch):
    from serving.api.config import ServeConfig
    from serving.api.server import serve_in_background

    root, cfg, _, _ = measured
    scfg = load_section(cfg, "serve", ServeConfig).resolved(str(root / "run"))
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ValueError, match=f"{ENV}.*empty or unset"):
        serve_in_background(scfg)
    monkeypatch.setenv(ENV, f"{KEY}, other-key")
    body = {"model": "small", "prompt": "def f():", "max_tokens": 2}
    with serve_in_background(scfg) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        ok = c.post("/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200, ok.text
        for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": KEY}):
            r = c.post("/v1/completions", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["message"], r.text
            assert KEY not in r.text and WRONG_KEY not in r.text
        metrics = c.get("/metrics").text
        assert KEY not in metrics and WRONG_KEY not in metrics


@pytest.mark.parametrize(
    "serve",
    [
        {"api_key": KEY},  # a key in the file: unknown key, rejected
        {"api_key_env": KEY},  # the key where the variable NAME belongs: not a variable name, rejected
        {"auth": {"token": KEY}},
    ],
)
def test_a_key_in_a_config_file_is_rejected_without_echoing_it(tmp_path, serve):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"serve": serve}))
    with pytest.raises(ConfigError) as e:
        load_section(path, "serve", ServeConfig)
    assert "cfg.yaml" in str(e.value) and KEY not in str(e.value)


def test_measure_api_key_env_must_be_a_variable_name(tmp_path):
    path = tmp_path / "cfg.yaml"
    stacks = [{"name": "a", "lever": "baseline", "model": "m"}, {"name": "b", "lever": "none", "model": "m"}]
    path.write_text(yaml.safe_dump({"measure": {"api_key_env": KEY, "stacks": stacks}}))
    with pytest.raises(ConfigError, match="api_key_env") as e:
        load_section(path, "measure", MeasureConfig)
    assert KEY not in str(e.value)


@pytest.mark.parametrize(
    "name", ["..", "../x", "a/../../b", "/etc/passwd", "~root/x", "a\\..\\b", "nul\x00name", "plans/../../../tmp"]
)
def test_safe_join_rejects_names_that_escape(tmp_path, name):
    with pytest.raises(UnsafePathError, match="not a safe name"):
        safe_join(tmp_path, name)
    run = RunDir(tmp_path / "run")
    with pytest.raises(UnsafePathError):
        run.stage("plans", name)
    with pytest.raises(UnsafePathError):
        run.path("models", name)
    assert not (tmp_path / "run" / "plans").exists(), "a rejected name must create nothing"


def test_safe_join_keeps_ordinary_names_inside(tmp_path):
    assert safe_join(tmp_path, "csv", "tokens-per-lang.csv") == f"{tmp_path}/csv/tokens-per-lang.csv"
    assert safe_join(tmp_path, "whatif", "strict..v2") == f"{tmp_path}/whatif/strict..v2"
    assert RunDir(tmp_path).stage("models", "lora-de") == f"{tmp_path}/models/lora-de"


def test_whatif_name_cannot_escape_the_run(tmp_path):
    from curation.decide.decisions import DecideConfig, run_whatif

    run = tmp_path / "run"
    (run / "signals").mkdir(parents=True)
    signals = {"id": ["a", "b"], "lang": ["en", "de"], "domain": ["docs"] * 2, "lid_score": [0.9, 0.1],
               "tokens_cl100k_base": [10, 20]}  # fmt: skip
    pq.write_table(pa.table(signals), run / "signals" / "shard-00000.parquet")
    cfg = DecideConfig(dedup=False, rules={})
    assert run_whatif(str(run), cfg, [], "fine")["input"] == 2
    for name in ("../../escaped", "/tmp/escaped-abs"):
        with pytest.raises(UnsafePathError):
            run_whatif(str(run), cfg, [], name)
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped-abs").exists()


@pytest.mark.parametrize(
    ("section", "data"),
    [
        ("plan", {"plans": [{"name": "../../evil"}]}),
        ("tokenizer", {"train": [{"name": "../evil", "vocab_size": 1000}]}),
    ],
)
def test_user_names_in_configs_that_would_escape_are_rejected(tmp_path, section, data):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({section: data}))
    with pytest.raises(ConfigError, match="name"):
        load_section(path, section, REGISTRY.sections()[section])


def test_finetune_model_name_cannot_escape(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(UnsafePathError):
        run.stage("models", "../../outside")
    assert not (tmp_path / "outside").exists()
