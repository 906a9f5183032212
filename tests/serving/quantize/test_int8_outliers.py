"""int8_dynamic_outliers: int8 x int8 linears, fp32 outlier dims: close to fp32, batch invariant, exact speculation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from serving.api.fixtures import tiny_llama
from serving.decode.batch import BatchEngine
from serving.decode.engine import Engine
from serving.models import load_model
from serving.quantize.int8_outliers import Int8OutlierLinear, outlier_dims, quantize_int8_outliers
from serving.quantize.methods import quantize_model, weight_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OUTLIERS = [3, 50, 77, 200]


def _linear_and_inputs(rows: int = 64) -> tuple[nn.Linear, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(256, 96, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(96, 256, generator=g) / 16)
        lin.bias.copy_(torch.randn(96, generator=g))
    x = torch.randn(rows, 256, generator=g)
    x[:, OUTLIERS] *= 60  # a few dimensions far above the rest, as in LLM hidden states
    return lin, x


def _rel_error(q: nn.Module, lin: nn.Linear, x: torch.Tensor) -> float:
    with torch.inference_mode():
        ref = lin(x)
        return float((q(x) - ref).norm() / ref.norm())


def test_outlier_dims_found_and_kept_exact() -> None:
    lin, x = _linear_and_inputs()
    dims = outlier_dims(x.abs().amax(0))
    assert sorted(dims.tolist()) == OUTLIERS
    assert len(outlier_dims(torch.ones(256))) == 2  # no outliers: still the two pins
    exact = _rel_error(Int8OutlierLinear(lin, dims), lin, x)
    quiet = torch.tensor([0, 1])  # two ordinary dimensions: the outliers go through int8 with everything else
    assert exact < 0.01 and _rel_error(Int8OutlierLinear(lin, quiet), lin, x) > 3 * exact


def test_each_row_is_the_same_whatever_rows_share_the_call() -> None:
    lin, x = _linear_and_inputs(rows=7)
    x[2] *= 1e-3  # rows of very different magnitudes and ranges
    x[5] = x[5].abs()
    q = Int8OutlierLinear(lin, outlier_dims(x.abs().amax(0)))
    with torch.inference_mode():
        together = q(x)
        for i in range(len(x)):
            assert torch.equal(together[i : i + 1], q(x[i : i + 1])), i
        assert torch.equal(q(x[None])[0], together)  # [batch, seq, D] like a model's activations
        assert q(x[:0]).shape == (0, 96)  # a pass that keeps no positions
    for i in range(len(x)):  # and every row close to fp32, the small one too
        assert _rel_error(q, lin, x[i : i + 1]) < 0.02, i


def test_model_quantized_in_place_shrinks_and_keeps_loss() -> None:
    base = tiny_llama(vocab_size=512, hidden=128, layers=2, seed=3, dtype=torch.float32)
    quant = tiny_llama(vocab_size=512, hidden=128, layers=2, seed=3, dtype=torch.float32)
    stats = quantize_int8_outliers(quant)
    assert not any(isinstance(m, nn.Linear) for m in quant.modules())  # the LM head included
    assert stats["quantized"] == 2 * 7 + 1 and not stats["kept_fp32"] and stats["max_rel_error"] < 0.05
    assert quant.get_output_embeddings().weight is not None  # read by compaction, padding, tying
    assert weight_bytes(base) / weight_bytes(quant) >= 2.0
    ids = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        nll = [float(m(input_ids=ids, labels=ids).loss) for m in (base, quant)]
    assert abs(nll[1] / nll[0] - 1) < 0.01, nll


def test_speculative_greedy_equals_plain_greedy_when_quantized(tmp_path) -> None:
    tiny_llama(vocab_size=128, hidden=64, layers=2, seed=5, dtype=torch.float32).save_pretrained(tmp_path / "m")
    quant = load_model(tmp_path / "m", device="cpu", quantization="int8_dynamic_outliers")
    plain = load_model(tmp_path / "m", device="cpu")
    engine = Engine(quant, draft=plain)
    prompts = [[4, 5, 6, 7, 4, 5, 6, 7, 4, 5], [9, 1, 9, 1, 9, 1, 9], [30, 31, 32]]
    for p in prompts:  # verify passes score k + 1 rows at once; plain decoding one: the same tokens
        want, _ = engine.generate(p, max_new_tokens=16)
        got, st = engine.generate(p, max_new_tokens=16, mode="speculative", k=3)
        assert got == want and st["num_draft_tokens"] > 0
        looked, _ = engine.generate(p, max_new_tokens=16, mode="prompt_lookup", k=3)
        assert looked == want


def test_batch_engine_serves_a_quantized_model_with_the_engines_tokens(tmp_path) -> None:
    """Rows of a batched pass (decode rows beside prompt chunks) get what they get alone: the Engine's tokens."""
    tiny_llama(vocab_size=256, hidden=64, layers=2, seed=6, dtype=torch.float32).save_pretrained(tmp_path / "m")
    model = load_model(tmp_path / "m", device="cpu", quantization="int8_dynamic_outliers")
    g = torch.Generator().manual_seed(2)
    requests = [{"prompt_ids": torch.randint(0, 256, (int(n),), generator=g).tolist(), "max_new_tokens": 8}
                for n in torch.randint(3, 40, (6,), generator=g)]  # fmt: skip
    ref = [Engine(model).generate(**r)[0] for r in requests]
    batch = BatchEngine(model, kv_budget_tokens=1024, block_size=8, max_batch=4, prefill_chunk=16)
    try:
        got = [s.run()[0] for s in [batch.stream(**r) for r in requests]]
    finally:
        batch.close()
    assert got == ref


def test_only_cpu_fp32_models() -> None:
    with pytest.raises(ValueError, match="needs a CPU fp32 model"):
        quantize_model(tiny_llama(vocab_size=64, hidden=32, layers=1, dtype=torch.float64), "int8_dynamic_outliers")
