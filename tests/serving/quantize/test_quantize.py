"""torchao quantizers: models load and generate, weights shrink (measured through tensor subclasses), loss holds."""

from __future__ import annotations

import pytest
import torch

from serving.api.fixtures import tiny_llama
from serving.decode.engine import Engine
from serving.models import load_model
from serving.quantize.config import QuantizeConfig
from serving.quantize.methods import QUANTIZERS, QuantizationUnsupported, quantize_model, weight_bytes
from tokenwise.config import BaseConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model() -> torch.nn.Module:
    return tiny_llama(vocab_size=64, hidden=128, layers=2, seed=2, dtype=torch.float32)


def _nll(model, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        return float(model(input_ids=ids, labels=ids).loss)


@pytest.mark.parametrize("method", ["int8_weight_only", "int8_dynamic"])
def test_int8_shrinks_weights_and_keeps_loss(method: str) -> None:
    base, quant = _model(), quantize_model(_model(), method)
    assert type(quant.model.layers[0].mlp.up_proj.weight).__name__ != "Parameter"  # a torchao tensor subclass
    ratio = weight_bytes(base) / weight_bytes(quant)
    assert ratio >= 1.5, ratio
    ids = torch.randint(0, 64, (2, 48), generator=torch.Generator().manual_seed(0))
    assert abs(_nll(quant, ids) / _nll(base, ids) - 1) < 0.01
    tokens, stats = Engine(quant).generate([1, 2, 3], max_new_tokens=8)
    assert len(tokens) == 8 and stats["new_tokens"] == 8


def test_weight_bytes_counts_tied_and_plain_storage_once() -> None:
    m = _model()

    def plain() -> int:  # parameters() already yields a tied weight once
        return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])

    assert weight_bytes(m) == plain()
    m.lm_head.weight = m.model.embed_tokens.weight
    assert weight_bytes(m) == plain()


def test_int4_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(QuantizationUnsupported, match="int4_weight_only needs a cuda device"):
        quantize_model(_model(), "int4_weight_only")
    with pytest.raises(ValueError, match="unknown quantization 'int3'"):
        quantize_model(_model(), "int3")


def test_saved_model_loads_quantized_and_speculates(tmp_path) -> None:
    _model().save_pretrained(tmp_path / "m")
    quant = load_model(tmp_path / "m", device="cpu", quantization="int8_weight_only")
    plain = load_model(tmp_path / "m", device="cpu")
    assert weight_bytes(plain) / weight_bytes(quant) >= 1.5
    engine = Engine(quant, draft=plain)
    want, _ = engine.generate([4, 5, 6], max_new_tokens=12)
    got, st = engine.generate([4, 5, 6], max_new_tokens=12, mode="speculative", k=3)
    assert got == want and st["num_draft_tokens"] > 0


def test_config_rejects_unknown_method() -> None:
    assert issubclass(QuantizeConfig, BaseConfig) and set(QUANTIZERS) >= {"int8_weight_only", "int8_dynamic"}
    with pytest.raises(ValueError, match="unknown quantization 'fp3'"):
        QuantizeConfig.model_validate({"models": [{"name": "target", "methods": ["fp3"]}]})


def test_quantize_stage_writes_a_report_and_skips_when_done(tmp_path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from serving.decode.tiny import stdlib_texts, train_tokenizer
    from serving.quantize.stage import run_quantize_stage
    from tokenwise.documents import CORPUS_SCHEMA

    run = tmp_path / "run"
    texts = stdlib_texts(limit=4, max_chars=1500)
    rows = [
        {"id": f"d{i}", "text": texts[i % 4], "source": "stdlib", "lang": "en", "domain": "code", "unit_id": None}
        for i in range(60)
    ]
    (run / "corpus").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), run / "corpus" / "shard-00000.parquet")
    train_tokenizer(texts, tmp_path / "tok", vocab_size=300)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    tiny_llama(vocab_size=len(tok), hidden=64, layers=1, dtype=torch.float32).save_pretrained(
        run / "models" / "target"
    )
    tok.save_pretrained(run / "models" / "target")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "quantize:\n  models: [{name: target, methods: [int8_weight_only, int4_weight_only]}]\n"
        "  eval_docs: 2\n  eval_chars: 300\n  speed_prompts: 1\n  new_tokens: 4\n  device: cpu\n"
    )
    summary = run_quantize_stage(str(cfg), str(run))
    report = json.loads((run / "models" / "target" / "quantized" / "report.json").read_text())
    int8 = report["methods"]["int8_weight_only"]
    assert (
        int8["size_ratio"] >= 1.5
        and int8["perplexity"] > 1
        and "needs a cuda" in report["methods"]["int4_weight_only"]["skipped"]
    )
    assert "int8_weight_only" in summary and "int4_weight_only skipped" in summary
    assert run_quantize_stage(str(cfg), str(run)) == summary  # marker: second call reuses the report
