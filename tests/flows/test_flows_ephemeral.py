"""Flows run without a server (prefect_test_harness): caching, artifacts, failures, parameter forms, registry."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from _curation_fixtures import parallel_docs, stdlib_docs, write_corpus  # noqa: E402
from _flow_stages import count_records, read_artifact, summarise, write_shards  # noqa: E402
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.params import CorpusParams, EndToEndParams, StageParams
from tokenwise.registry import Group, Stage
from tokenwise.stages import REGISTRY

TOY = [
    Stage("toy", "corpus", count_records, writes=("toy",)),
    Stage("toysum", "curate", summarise, upstream=("toy",), writes=("toysum",)),
]


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def toy_stages(monkeypatch):
    """The registry holds only the toy stages: `toy` in the corpus group, `toysum` in the curate group."""
    monkeypatch.setattr(REGISTRY, "stages", list(TOY))


def write_config(tmp_path: Path, records: list[str]) -> str:
    cfg = tmp_path / "toy.yaml"
    lines = "\n".join(f"# record: {r}" for r in records)
    prefect = f"prefect:\n  result_storage: {tmp_path / 'results'}\n"
    cfg.write_text(textwrap.dedent("run:\n  seed: 0\n") + prefect + lines + "\n")
    return str(cfg)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split()[::2] if log.exists() else []


def test_stage_flow_runs_library_and_publishes_artifacts(tmp_path, toy_stages):
    from flows.corpus_flow import corpus_flow

    config = write_config(tmp_path, ["de Hallo Welt", "de Guten Tag", "fr Bonjour"])
    out = corpus_flow(StageParams(config_path=config, run_dir=str(tmp_path / "run")))
    assert [r["summary"] for r in out["stages"]] == ["3 records in 2 languages"]
    assert (tmp_path / "run" / "toy" / "_DONE.json").exists()
    assert not list((tmp_path / "run").rglob(".tmp-*"))
    summary = read_artifact("tokenwise-corpus-summary")
    assert summary is not None and "3 records in 2 languages" in summary.data
    assert read_artifact("tokenwise-corpus-progress").data == 100.0
    assert read_artifact("tokenwise-toy-progress").data == 100.0, "step=/steps= log lines drive stage progress"
    assert read_artifact("tokenwise-corpus-changes") is not None
    assert list((tmp_path / "results").iterdir()), "the stage result persists under prefect.result_storage"


def test_unchanged_inputs_hit_cache_and_changes_rerun(tmp_path, toy_stages):
    from flows.corpus_flow import corpus_flow

    config = write_config(tmp_path, ["de a", "fr b"])
    params = StageParams(config_path=config, run_dir=str(tmp_path / "run"))
    corpus_flow(params)
    corpus_flow(params)
    assert calls(tmp_path) == ["count_records"], "a rerun with unchanged inputs must come from the cache"
    write_config(tmp_path, ["de a", "fr b", "hi c"])
    out = corpus_flow(params)
    assert calls(tmp_path) == ["count_records"] * 2
    assert out["stages"][0]["summary"] == "3 records in 3 languages"
    for p in (tmp_path / "run" / "toy").iterdir():
        p.unlink()
    corpus_flow(params)
    assert calls(tmp_path) == ["count_records"] * 3, "deleted outputs must force the stage to run again"
    assert (tmp_path / "run" / "toy" / "counts.json").exists()


def test_failing_stage_ends_failed_with_file_record_and_fix(tmp_path, toy_stages):
    from flows.corpus_flow import corpus_flow

    config = write_config(tmp_path, ["de ok", "xx"])
    state = corpus_flow(StageParams(config_path=config, run_dir=str(tmp_path / "run")), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception) as err:
        state.result()
    msg = str(err.value)
    assert f"{config}:6" in msg and "record '# record: xx'" in msg
    assert "What to do" in msg and "stage toy" in msg
    assert not (tmp_path / "run" / "toy" / "_DONE.json").exists(), "a failed stage must not look complete"


def test_transient_io_error_is_retried_but_bad_record_is_not(tmp_path, toy_stages):
    from flows.corpus_flow import corpus_flow

    config = write_config(tmp_path, ["de a"])
    Path(config).write_text(Path(config).read_text() + "# flaky\n")
    out = corpus_flow(StageParams(config_path=config, run_dir=str(tmp_path / "run")))
    assert out["stages"][0]["summary"] == "1 records in 1 languages"
    assert calls(tmp_path) == ["count_records"] * 2, "an OSError is retried once, then the stage succeeds"
    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", ["xx"])
    state = corpus_flow(StageParams(config_path=bad, run_dir=str(tmp_path / "run2")), return_state=True)
    assert state.is_failed()
    assert calls(tmp_path).count("count_records") == 3, "a bad record fails at once, without retries"


def test_invalid_config_fails_before_any_stage_with_file_line(tmp_path, toy_stages):
    from flows.corpus_flow import corpus_flow

    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seed: zero\n")
    state = corpus_flow(StageParams(config_path=str(bad), run_dir=str(tmp_path / "run")), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"bad.yaml:2: run.seed"):
        state.result()
    assert calls(tmp_path) == []


@pytest.fixture
def corpus_section(monkeypatch):
    """The toy registry still knows the `corpus:` section (the corpus form's knobs set it; the toy stage runs)."""
    from curation.ingest.build import CorpusConfig

    monkeypatch.setitem(REGISTRY.extra_sections, "corpus", CorpusConfig)


def _knob_config(tmp_path: Path, corpus: str) -> str:
    cfg = tmp_path / "knobs.yaml"
    cfg.write_text(f"corpus:\n  sources:\n    - {corpus}\nprefect:\n  result_storage: {tmp_path / 'results'}\n"
                   "# record: de Hallo Welt\n")  # fmt: skip
    return str(cfg)


def test_form_knobs_enter_the_cache_key_and_are_written_and_published(tmp_path, toy_stages, corpus_section):
    """A changed knob reruns the stage, the same value hits the cache; the settings go beside the outputs."""
    from flows.corpus_flow import corpus_flow

    config = _knob_config(tmp_path, "{type: gettext, languages: [de]}")
    run = tmp_path / "run"

    def build(**knobs):
        return corpus_flow(CorpusParams(config_path=config, run_dir=str(run), **knobs))

    build(languages=["fr"])
    out = build(languages=["fr"])
    assert calls(tmp_path) == ["count_records"], "the same knob value must come from the cache"
    effective = run / ".flows" / "corpus-config.yaml"
    assert out["settings"]["stage_config"] == str(effective) and out["settings"]["overrides"] == {"languages": ["fr"]}
    build(languages=["es"])
    assert calls(tmp_path) == ["count_records"] * 2, "a changed knob must rerun the stage"
    assert yaml.safe_load(effective.read_text())["corpus"]["sources"][0]["languages"] == ["es"]
    settings = yaml.safe_load((run / ".flows" / "corpus-settings.yaml").read_text())
    assert settings["overrides"] == {"languages": ["es"]} and settings["config_path"] == config
    assert settings["sections"]["corpus"]["sources"][0]["languages"] == ["es"]
    assert settings["flow_run"].startswith("corpus-run-knobs-")
    md = read_artifact("tokenwise-corpus-settings").data
    assert "| languages | `corpus.sources[type=gettext].languages` | `[es]` | run form |" in md
    assert build()["settings"]["stage_config"] == config, "blank knobs: the stages read the config itself"
    assert calls(tmp_path) == ["count_records"] * 3
    build(languages=["de"])
    assert calls(tmp_path) == ["count_records"] * 3, "a value equal to the config's is no override: cache hit"


def test_bad_form_value_fails_at_once_and_writes_nothing(tmp_path, toy_stages, corpus_section):
    from flows.corpus_flow import corpus_flow

    config = _knob_config(tmp_path, "{type: stdlib, max_modules: 3}")
    params = CorpusParams(config_path=config, run_dir=str(tmp_path / "run"), max_stdlib_modules=0)
    state = corpus_flow(params, return_state=True)
    assert state.is_failed()
    msg = state.message
    assert "run form: corpus.sources.0.stdlib.max_modules: Input should be greater than or equal to 1 (got 0)" in msg
    assert "What to do" in msg
    assert not (tmp_path / "run").exists() and calls(tmp_path) == []
    state = corpus_flow(CorpusParams(config_path=config, run_dir=str(tmp_path / "run"), languages=["de"]),
                        return_state=True)  # fmt: skip
    assert "corpus.sources[type=gettext]: not in the config" in state.message and not (tmp_path / "run").exists()


def test_per_shard_stage_progress_is_updated_as_each_shard_is_written(tmp_path):
    """The shard watcher publishes `<stage>: i/N shards` while the stage runs (the stage waits to see each)."""
    from flows.catalog import group_flow

    corpus = tmp_path / "run" / "corpus"
    corpus.mkdir(parents=True)
    for i in range(3):
        (corpus / f"shard-{i:05d}.parquet").write_bytes(b"")
    stage = Stage("toyshards", "toyshards", write_shards, writes=("toyshards",))
    with REGISTRY.added(stage, Group("toyshards", "A per-shard toy stage.")):
        out = group_flow("toyshards")(StageParams(config_path=write_config(tmp_path, []), run_dir=str(corpus.parent)))
    assert out["stages"][0]["summary"] == "3 shards"
    seen = json.loads((corpus.parent / "toyshards" / "seen.json").read_text())
    assert [d for d, _ in seen] == [f"toyshards: {i}/3 shards" for i in (1, 2, 3)]
    assert [round(p) for _, p in seen] == [33, 67, 100]
    final = read_artifact("tokenwise-toyshards-progress")
    assert final.data == 100.0 and final.description == "toyshards done: 3 shards written"


def test_lora_training_steps_drive_the_progress_artifact(tmp_path):
    """The real LoRA recipe logs `steps=N` then `step=i`: the stage's progress artifact follows every step."""
    import torch
    from prefect import flow

    from finetune.config import DataConfig, LoraConfig
    from finetune.data import finite_texts
    from finetune.lora import LoraRecipe
    from finetune.testing import stdlib_docs, tiny_llama, train_tokenizer
    from flows.tasks import LogProgress, ProgressArtifact

    texts = [d["text"] for d in stdlib_docs(("json", "heapq"))]
    tok = train_tokenizer(tmp_path / "tok", texts, vocab_size=400)
    tiny_llama(tmp_path / "llama", tok)
    cfg = LoraConfig(base=str(tmp_path / "llama"), data=DataConfig(seq_len=32, eval_docs=2), rank=2, alpha=4,
                     steps=4, batch_size=2, warmup_steps=1, eval_every=100, checkpoint_every=100)  # fmt: skip

    class Recorded(ProgressArtifact):
        def update(self, pct, description, force=False):
            self.seen = [*getattr(self, "seen", []), description]
            return super().update(pct, description, force=True)

    @flow
    def train() -> list[str]:
        progress = Recorded("lora")
        with LogProgress("lora", loggers=("finetune",), progress=progress):
            LoraRecipe(cfg, out_dir=str(tmp_path / "out")).setup(finite_texts(texts), texts[:2]).train()
        return progress.seen

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen = train()
    finally:
        torch.set_num_threads(threads)
    assert [s for s in seen if "/4" in s and "step 0" not in s] == [f"lora: step {i}/4" for i in (1, 2, 3, 4)]
    assert seen[-1] == "lora done" and read_artifact("tokenwise-lora-progress").data == 100.0


def test_end_to_end_runs_groups_in_data_flow_order(tmp_path, toy_stages):
    from flows.end_to_end_flow import end_to_end_flow

    config = write_config(tmp_path, ["de a", "pt_BR b"])
    out = end_to_end_flow(EndToEndParams(config_path=config, run_dir=str(tmp_path / "run")))
    assert list(out) == ["corpus", "curate"]
    assert calls(tmp_path) == ["count_records", "summarise"]
    assert read_artifact("tokenwise-end-to-end-progress").data == 100.0
    out = end_to_end_flow(EndToEndParams(config_path=config, run_dir=str(tmp_path / "run"), stop_after="corpus"))
    assert list(out) == ["corpus"]


def test_curate_flow_counts_tokens_one_task_per_shard_on_the_configured_thread_runner(tmp_path, monkeypatch):
    """`prefect: task_runner: {kind: thread}` runs the tokens stage's per-shard flow (flows.ray_runner.FANOUT): the
    same counts.json as the CLI stage, one task per shard in this process, and a rerun that submits no task."""
    from curation.plans.token_counts import run_stage
    from flows.curate_flow import curate_flow

    monkeypatch.setattr(REGISTRY, "stages", [REGISTRY.stage("tokens")])
    shards = write_corpus(tmp_path / "cli", parallel_docs(limit=8) + stdlib_docs(), shard_size=25)
    shutil.copytree(tmp_path / "cli", tmp_path / "flow")
    config = tmp_path / "c.yaml"
    config.write_text(
        "tokens: {tokenizers: [tiktoken:cl100k_base, tiktoken:o200k_base], source: corpus, tasks: 1, workers: 1}\n"
        f"prefect:\n  result_storage: {tmp_path / 'results'}\n  task_runner: {{kind: thread, max_workers: 2}}\n"
    )
    run_stage(str(config), str(tmp_path / "cli"))
    params = StageParams(config_path=str(config), run_dir=str(tmp_path / "flow"))
    out = curate_flow(params)
    cli, flow = (json.loads((tmp_path / r / "tokens" / "corpus" / "counts.json").read_text()) for r in ("cli", "flow"))
    assert cli.pop("where")["executor"] == "local"
    assert flow.pop("where")["pids"] == [os.getpid()], "thread runner: every shard task ran in this process"
    assert flow == cli and cli["shards"] == len(shards) > 1
    assert list(out["stages"][0]["markers"]) == ["tokens/corpus/_DONE.json"]
    again = curate_flow(params)
    assert again["stages"][0]["summary"] == "up to date: " + out["stages"][0]["summary"]
    assert _completed_task_runs(f"count-{tmp_path / 'flow'}") == len(shards), "the rerun must submit no shard task"


def _completed_task_runs(name_prefix: str) -> int:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterState

    flt = TaskRunFilter(
        name=TaskRunFilterName(like_=name_prefix), state=TaskRunFilterState(type={"any_": ["COMPLETED"]})
    )
    with get_client(sync_client=True) as client:
        return len(client.read_task_runs(task_run_filter=flt))


def test_group_without_library_fails_saying_what_is_missing(tmp_path, toy_stages):
    from flows.quantize_flow import quantize_flow

    state = quantize_flow(
        StageParams(config_path=write_config(tmp_path, []), run_dir=str(tmp_path)), return_state=True
    )
    with pytest.raises(Exception, match="no stage of this group is registered"):
        state.result()


# -- no flow runs needed ----------------------------------------------------------------------------------------------


def _is_form_field(prop: dict) -> bool:
    if "enum" in prop or prop.get("type") in {"string", "integer", "number", "boolean"}:
        return True
    if prop.get("type") == "array":
        return _is_form_field(prop.get("items", {}))
    if "anyOf" in prop:
        return all(_is_form_field(p) or p.get("type") == "null" for p in prop["anyOf"])
    return False


def test_every_deployment_parameter_schema_renders_as_a_form():
    from flows.deployments import build_deployments, deployment_flows

    deployments = build_deployments("configs/demo.yaml", "runs/demo")
    assert sorted(d.name for d in deployments) == sorted(deployment_flows())
    for d in deployments:
        schema = d._parameter_openapi_schema.model_dump()
        assert list(schema["properties"]) == ["params"], d.name
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{d.name}.{name} has no description"
            ref = prop["$ref"].rsplit("/", 1)[-1]
            model = schema["definitions"][ref]
            for field, fprop in model["properties"].items():
                assert _is_form_field(fprop), f"{d.name}.{name}.{field} is not a typed form field: {fprop}"
                assert fprop.get("description"), f"{d.name}.{name}.{field} has no description"


def test_corpus_refresh_deployment_is_scheduled_from_config(tmp_path):
    from flows.deployments import build_deployments

    cfg = tmp_path / "c.yaml"
    cfg.write_text("prefect:\n  refresh_cron: '*/5 * * * *'\n")
    by_name = {d.name: d for d in build_deployments(str(cfg), "runs/x")}
    assert [s.schedule.cron for s in by_name["corpus-refresh"].schedules] == ["*/5 * * * *"]
    assert all(not d.schedules for n, d in by_name.items() if n != "corpus-refresh")


def test_every_demo_stage_belongs_to_a_flow_and_gpu_stages_use_gpu_pool():
    from flows.catalog import group_flow
    from flows.deployments import deployment_flows, pool_for
    from tokenwise.orchestration import PrefectConfig

    assert all(group_flow(g) is not None for g in REGISTRY.group_names())
    cfg = PrefectConfig()
    pools = {name: pool_for(name, cfg) for name in deployment_flows()}
    assert {n for n, p in pools.items() if p == "gpu"} == {"finetune", "quantize", "serve", "measure", "end-to-end"}


def test_artifact_helpers_keep_stable_keys_and_small_tables():
    from flows.tasks import MAX_ROWS, artifact_key, diff_sources, rows_of

    assert artifact_key("corpus-refresh", "kept_dropped") == "tokenwise-corpus-refresh-kept-dropped"
    assert len(rows_of({str(i): {"n": i} for i in range(500)})) == MAX_ROWS
    rows = diff_sources({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert rows == [
        {"file": "d", "change": "new"},
        {"file": "b", "change": "changed"},
        {"file": "c", "change": "removed"},
        {"file": "(1 files)", "change": "unchanged"},
    ]


def test_corpus_refresh_rebuilds_only_when_sources_change_and_reports_what_changed(tmp_path, monkeypatch):
    """The real corpus library on a tiny config: one .mo catalog pair and a directory of prose files."""
    from flows.corpus_flow import corpus_refresh_flow

    monkeypatch.setattr(REGISTRY, "stages", [REGISTRY.stage("corpus")])
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The quick brown fox jumps over the lazy dog, twice over.\n")
    (docs / "b.md").write_text("A second document about translation memories and token budgets.\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "corpus:\n  sources:\n    - {type: gettext, languages: [de], catalogs: [adduser], min_words: 2}\n"
        f"    - {{type: text_dir, name: docs, paths: ['{docs}'], patterns: ['*.md']}}\n  tasks: 1\n  workers: 1\n"
    )
    params = StageParams(config_path=str(config), run_dir=str(tmp_path / "run"))
    first = corpus_refresh_flow(params)["corpus"]
    docs_before = json.loads((tmp_path / "run" / "corpus" / "manifest.json").read_text())["documents"]
    again = corpus_refresh_flow(params)["corpus"]
    assert again["changes"]["n_changed"] == 0 and first["changes"]["n_changed"] == 3  # 2 prose + 1 catalog new
    (docs / "b.md").write_text("The second document, edited: token premiums differ by language.\n")
    (docs / "c.md").write_text("A third document that arrived after the first build of the corpus.\n")
    corpus_refresh_flow(params)
    changes = {r["file"]: r["change"] for r in _table(read_artifact("tokenwise-corpus-refresh-changes"))}
    assert changes[str(docs / "b.md")] == "changed" and changes[str(docs / "c.md")] == "new"
    assert str(docs / "a.md") not in changes
    manifest = json.loads((tmp_path / "run" / "corpus" / "manifest.json").read_text())
    assert manifest["documents"] == docs_before + 1


def _table(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def test_curate_and_measure_publishers_write_the_report_and_publish_it(tmp_path):
    """Every curate/measure flow run rewrites the HTML report and publishes its summary and link."""
    from flows.curate_flow import publish_curate
    from flows.measure_flow import publish_measure

    run = tmp_path / "run"
    (run / "corpus").mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenwise.documents import CORPUS_SCHEMA

    rows = [{"id": "a", "text": "Hallo Welt", "source": "s", "lang": "de", "domain": "ui", "unit_id": None}]
    pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), run / "corpus" / "shard-00000.parquet")
    for publish in (publish_curate, publish_measure):
        (run / "report" / "index.html").unlink(missing_ok=True)
        publish(publish.__name__.removeprefix("publish_"), str(run))
        assert (run / "report" / "index.html").exists()
    md = read_artifact("tokenwise-report-summary-md")
    assert md is not None and "tokenwise report" in md.data


def test_a_stage_in_a_new_group_gets_a_generated_flow_and_deployment(tmp_path):
    """One registry entry (plus its group) is enough for a Prefect flow, a module-path entrypoint and a deployment."""
    import importlib

    from flows.catalog import group_flow
    from flows.deployments import build_deployments, deployment_flows, entrypoint
    from tokenwise.registry import Group

    stage = Stage("toy", "toygroup", count_records, writes=("toy",), command="toygroup count")
    config = write_config(tmp_path, ["de Hallo", "fr Bonjour"])
    with REGISTRY.added(stage, Group("toygroup", "A toy group.")):
        flow = group_flow("toygroup")
        module, _, name = entrypoint(flow).partition(":")
        assert getattr(importlib.import_module(module), name) is flow
        assert "toygroup" in deployment_flows() and "toygroup" in {d.name for d in build_deployments(config, "r")}
        out = flow(StageParams(config_path=config, run_dir=str(tmp_path / "run")))
    assert [r["stage"] for r in out["stages"]] == ["toy"] and out["stages"][0]["summary"] == "2 records in 2 languages"
    counts = json.loads((tmp_path / "run" / "toy" / "counts.json").read_text())
    assert counts["by_lang"] == {"de": {"docs": 1}, "fr": {"docs": 1}}
