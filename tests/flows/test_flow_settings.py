"""Run-form knobs (flows/params.py) → effective settings (flows/settings.py), on the shipped configs/demo.yaml.

No Prefect server: the deployment defaults, the override rule, the key language, validation messages and the files a
run writes. The same code runs in every flow (tests/flows/test_flows_ephemeral.py, test_prefect_server.py).
"""

from __future__ import annotations

import pytest
import yaml
from _paths import REPO

from flows.params import CorpusParams, CurateParams, FinetuneParams, MeasureParams, StageParams, TokenizerParams
from flows.settings import (
    MISSING,
    KnobError,
    form_defaults,
    form_overrides,
    knobs_of,
    parse_key,
    read_key,
    resolve,
    settings_markdown,
    validated_data,
    write_settings,
)
from tokenwise.stages import REGISTRY

DEMO = str(REPO / "configs" / "demo.yaml")
MODELS = {
    "corpus": CorpusParams,
    "curate": CurateParams,
    "tokenizer": TokenizerParams,
    "finetune": FinetuneParams,
    "measure": MeasureParams,
}


@pytest.fixture(scope="module")
def demo() -> dict:
    return yaml.safe_load(open(DEMO))


def test_every_knob_names_a_key_of_the_shipped_config():
    """A knob whose key no longer exists in configs/demo.yaml (a renamed field) would silently do nothing."""
    full = validated_data(DEMO)
    for group, model in MODELS.items():
        knobs = knobs_of(model)
        assert knobs, group
        defaults = form_defaults(model, DEMO)
        for k in knobs:
            assert k.section in REGISTRY.sections(), (group, k.key)
            if k.fill:
                assert read_key(full, k.key.format(**defaults)) is not MISSING, (group, k.key)
    assert knobs_of(StageParams) == []


def test_deployment_defaults_are_the_config_values(demo):
    gettext = next(s for s in demo["corpus"]["sources"] if s["type"] == "gettext")
    assert form_defaults(CorpusParams, DEMO) == {
        "languages": gettext["languages"],
        "catalogs": gettext["catalogs"],
        "max_stdlib_modules": 250,
        "text_dir_paths": ["/usr/share/doc"],
        "text_dir_max_files": 200,
    }
    curate = form_defaults(CurateParams, DEMO)
    assert curate["lang_low_score"] == demo["decide"]["rules"]["lang_low_score"]["threshold"] == 0.3
    assert curate["quality_low"] is None and curate["allowed_langs"] == ["*"] and "rule_thresholds" not in curate
    assert form_defaults(TokenizerParams, DEMO) == {"tokenizer_name": "multi16k", "model": "bpe", "vocab_size": 16000}
    lora = demo["lora"]
    assert form_defaults(FinetuneParams, DEMO) == {
        "steps": lora["steps"],
        "rank": lora["rank"],
        "lr": lora["lr"],
        "domains": lora["data"]["domains"],
    }
    measure = form_defaults(MeasureParams, DEMO)
    assert measure == {
        "requests": demo["measure"]["requests"],
        "stacks": [s["name"] for s in demo["measure"]["stacks"]],
    }


def test_only_changed_form_values_are_overrides():
    defaults = form_defaults(FinetuneParams, DEMO)
    form = FinetuneParams(config_path=DEMO, **{**defaults, "steps": 7, "lr": None}).model_dump()
    assert form_overrides(FinetuneParams, form, defaults) == {"steps": 7}, "untouched or blank = config value"
    assert form_overrides(FinetuneParams, form, {}) == {"steps": 7, "rank": 8, "domains": ["docs"]}, "no deployment"


def test_corpus_knobs_shrink_every_source_of_their_type_and_validate(tmp_path):
    form = {"languages": ["de", "fr"], "catalogs": ["adduser"], "max_stdlib_modules": 3, "text_dir_max_files": 5}
    settings, data = resolve("corpus", CorpusParams, DEMO, str(tmp_path / "run"), form)
    assert settings.overrides == form
    gettext, stdlib, text_dir = data["corpus"]["sources"]
    assert (gettext["languages"], gettext["catalogs"], stdlib["max_modules"]) == (["de", "fr"], ["adduser"], 3)
    assert text_dir["max_files"] == 5 and text_dir["paths"] == ["/usr/share/doc"]
    assert gettext["exclude_catalogs"] and "run" in data, "everything else is the config's own data"
    assert settings.stage_config == str(tmp_path / "run" / ".flows" / "corpus-config.yaml")
    assert settings.sections["corpus"]["sources"][1]["max_modules"] == 3


def test_curate_thresholds_rule_assignments_and_allowed_langs(tmp_path):
    form = {"lang_low_score": 0.5, "rule_thresholds": ["top_2_gram=none", "quality_low=0.1"], "allowed_langs": ["*"]}
    settings, data = resolve("curate", CurateParams, DEMO, str(tmp_path), form)
    rules = data["decide"]["rules"]
    assert [rules[r]["threshold"] for r in ("lang_low_score", "top_2_gram", "quality_low")] == [0.5, None, 0.1]
    assert data["decide"]["allowed_langs"] is None and "allowed_langs" not in settings.overrides, "* = config's null"
    assert settings.knobs["top_2_gram"] is None and settings.knobs["quality_low"] == 0.1
    assert set(settings.sections) == {"score", "dedup", "decide", "tokens", "plan"}
    _, data = resolve("curate", CurateParams, DEMO, str(tmp_path), {"allowed_langs": ["de", "en"]})
    assert data["decide"]["allowed_langs"] == ["de", "en"]


def test_a_value_equal_to_the_config_is_no_override(tmp_path, demo):
    same = {"steps": demo["lora"]["steps"], "domains": demo["lora"]["data"]["domains"]}
    settings, _ = resolve("finetune", FinetuneParams, DEMO, str(tmp_path), same)
    assert settings.overrides == {} and settings.stage_config == DEMO, "stages read the config itself: same cache key"


def test_tokenizer_knobs_go_to_the_named_train_entry(tmp_path):
    form = {"tokenizer_name": "en8k", "model": "unigram", "vocab_size": 9000}
    settings, data = resolve("tokenizer", TokenizerParams, DEMO, str(tmp_path), form)
    train = {t["name"]: t for t in data["tokenizer"]["train"]}
    assert (train["en8k"]["model"], train["en8k"]["vocab_size"]) == ("unigram", 9000)
    assert train["multi16k"]["vocab_size"] == 16000 and "model" not in train["multi8k"]
    assert settings.knobs == form
    settings, data = resolve("tokenizer", TokenizerParams, DEMO, str(tmp_path), {"vocab_size": 12000})
    assert data["tokenizer"]["train"][0]["vocab_size"] == 12000 and settings.knobs["tokenizer_name"] == "multi16k"


def test_measure_stacks_select_by_name_in_config_order(tmp_path, demo):
    settings, data = resolve("measure", MeasureParams, DEMO, str(tmp_path), {"stacks": ["routed", "baseline"]})
    assert [s["name"] for s in data["measure"]["stacks"]] == ["baseline", "routed"]
    routed = next(s for s in demo["measure"]["stacks"] if s["name"] == "routed")
    assert data["measure"]["stacks"][1]["serve_models"] == routed["serve_models"]


@pytest.mark.parametrize(
    ("model", "form", "message"),
    [
        (FinetuneParams, {"steps": 0}, "run form: lora.steps: Input should be greater than or equal to 1 (got 0)"),
        (FinetuneParams, {"lr": -1.0}, "run form: lora.lr: Input should be greater than 0 (got -1.0)"),
        (CurateParams, {"lang_low_score": "high"}, "run form: decide.rules.lang_low_score.threshold: Input should be"),
        (CurateParams, {"rule_thresholds": ["nosuch=0.1"]}, "run form: decide.rules.nosuch: not in the config"),
        (CurateParams, {"rule_thresholds": ["0.1"]}, "'0.1' is not name=value (field rule_thresholds)"),
        (TokenizerParams, {"vocab_size": 10}, "run form: tokenizer.train.0.vocab_size: Input should be greater than"),
        (TokenizerParams, {"tokenizer_name": "big", "vocab_size": 9000}, "no entry with name=big; the config has"),
        (MeasureParams, {"stacks": ["nope"]}, "run form: measure.stacks: unknown nope; the config has: baseline,"),
        (MeasureParams, {"stacks": ["routed"]}, "run form: measure.stacks: List should have at least 2 items"),
        (MeasureParams, {"requests": 0}, "run form: measure.requests: Input should be greater than or equal to 1"),
        (CorpusParams, {"max_stdlib_modules": 0}, "run form: corpus.sources.1.stdlib.max_modules: Input should be"),
    ],
)
def test_bad_form_values_name_section_key_and_write_nothing(tmp_path, model, form, message):
    group = next(g for g, m in MODELS.items() if m is model)
    with pytest.raises(KnobError) as err:
        resolve(group, model, DEMO, str(tmp_path / "run"), form)
    assert message in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_knob_for_a_source_the_config_lacks_says_so(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("corpus:\n  sources:\n    - {type: stdlib, max_modules: 3}\n")
    with pytest.raises(KnobError, match=r"corpus.sources\[type=gettext\]: not in the config \(no entry with "
                       r"type=gettext; the config has type: stdlib\)"):  # fmt: skip
        resolve("corpus", CorpusParams, str(cfg), str(tmp_path / "run"), {"languages": ["de"]})


def test_a_section_the_config_leaves_out_starts_from_its_defaults(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run:\n  seed: 0\n")
    settings, data = resolve("curate", CurateParams, str(cfg), str(tmp_path / "run"), {"lang_low_score": 0.4})
    assert data["decide"]["rules"]["lang_low_score"]["threshold"] == 0.4
    assert data["decide"]["rules"]["gopher_short_doc"]["threshold"] is None and data["run"] == {"seed": 0}


def test_written_settings_and_effective_config(tmp_path):
    run = tmp_path / "run"
    form = {"lang_low_score": 0.45}
    settings, data = resolve("curate", CurateParams, DEMO, str(run), form)
    path = write_settings(settings, data, str(run), "curate-run-demo-x")
    effective = run / ".flows" / "curate-config.yaml"
    assert yaml.safe_load(effective.read_text()) == data
    assert sorted(REGISTRY.validate_file(effective)) == sorted(yaml.safe_load(open(DEMO)))
    written = yaml.safe_load(open(path))
    assert written["overrides"] == form and written["stage_config"] == str(effective)
    assert written["flow_run"] == "curate-run-demo-x" and written["config_path"] == DEMO
    assert written["sections"]["decide"]["rules"]["lang_low_score"]["threshold"] == 0.45
    md = settings_markdown(settings, path, CurateParams)
    assert "| lang_low_score | `decide.rules.lang_low_score.threshold` | `0.45` | run form |" in md
    assert "| top_2_gram | `decide.rules.top_2_gram.threshold` | `0.5` | config |" in md
    again, data2 = resolve("curate", CurateParams, DEMO, str(run), form)
    write_settings(again, data2, str(run))
    assert effective.read_text() == (run / ".flows" / "curate-config.yaml").read_text()


def test_same_overrides_give_the_same_effective_config_bytes(tmp_path):
    """The stage cache key hashes the effective config: the same knob value must give the same bytes."""
    out = []
    for run in ("a", "b"):
        settings, data = resolve("measure", MeasureParams, DEMO, str(tmp_path / run), {"requests": 8})
        write_settings(settings, data, str(tmp_path / run))
        out.append((tmp_path / run / ".flows" / "measure-config.yaml").read_bytes())
    assert out[0] == out[1]


def test_key_language():
    assert parse_key("corpus.sources[type=gettext].max") == ["corpus", "sources", ("type", "gettext"), "max"]
    assert parse_key("tokenizer.train[0].name") == ["tokenizer", "train", 0, "name"]
    data = {"s": {"xs": [{"k": "a", "v": 1}, {"k": "b", "v": 2}]}}
    assert read_key(data, "s.xs[k=b].v") == 2 and read_key(data, "s.xs[1].k") == "b"
