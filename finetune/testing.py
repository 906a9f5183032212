"""Small real fixtures for tests and benchmarks: a byte-level BPE trained on real text, a curated-corpus shard, and
tiny Llama / GPT-2 models created locally (nothing is downloaded).

Texts come from this machine: Python standard-library sources (domain ``code``), their docstrings (``docs``) and
gettext ``.mo`` catalogs (``ui``, one language per catalog, msgid and msgstr sharing a unit).
"""

from __future__ import annotations

import ast
import gettext
import glob
import hashlib
import os
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokenwise.documents import CORPUS_SCHEMA
from tokenwise.pysource import parse_python

STDLIB_MODULES = ("json", "csv", "argparse", "textwrap", "string", "shlex", "fractions", "heapq", "bisect", "queue")
SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}


def stdlib_docs(modules: tuple[str, ...] = STDLIB_MODULES, max_chars: int = 1500) -> list[dict]:
    """Function/class sources as ``code`` documents and their docstrings as ``docs`` documents."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[dict] = []
    for mod in modules:
        path = root / f"{mod}.py"
        if not path.is_file():
            path = root / mod / "__init__.py"
        src = path.read_text(encoding="utf-8")
        for node in ast.walk(parse_python(src)):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef):
                continue
            seg = ast.get_source_segment(src, node) or ""
            uid = f"py:{mod}:{node.name}:{node.lineno}"
            if seg:
                docs.append(_doc(f"{uid}:code", seg[:max_chars], "stdlib", "en", "code", uid + ":c"))
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:
                docs.append(_doc(f"{uid}:doc", doc[:max_chars], "stdlib", "en", "docs", uid + ":d"))
    return docs


def mo_docs(
    langs: tuple[str, ...] = ("de", "fr", "es"), domain_file: str = "coreutils", limit: int = 300
) -> list[dict]:
    """(msgid, msgstr) pairs of one gettext catalog per language as ``ui`` documents sharing unit ids."""
    docs: list[dict] = []
    seen: set[str] = set()
    for lang in langs:
        files = glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/{domain_file}.mo")
        if not files:
            continue
        with open(files[0], "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        pairs = [(k, v) for k, v in catalog.items() if isinstance(k, str) and k and v][:limit]
        for msgid, msgstr in pairs:
            uid = "mo:" + hashlib.blake2b(msgid.encode(), digest_size=8).hexdigest()
            docs.append(_doc(f"{uid}:{lang}", msgstr, domain_file, lang, "ui", uid))
            if uid not in seen:
                seen.add(uid)
                docs.append(_doc(f"{uid}:en", msgid, domain_file, "en", "ui", uid))
    return docs


def _doc(id_: str, text: str, source: str, lang: str, domain: str, unit: str) -> dict:
    return {"id": id_, "text": text, "source": source, "lang": lang, "domain": domain, "unit_id": unit}


def write_curated(run_dir: str | os.PathLike, docs: list[dict], shards: int = 2) -> Path:
    """Write documents as ``<run>/curated/shard-*.parquet`` in the corpus schema."""
    out = Path(run_dir) / "curated"
    out.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        part = docs[s::shards]
        pq.write_table(pa.Table.from_pylist(part, schema=CORPUS_SCHEMA), out / f"shard-{s:05d}.parquet")
    return out


def train_tokenizer(out_dir: str | os.PathLike, texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE trained on ``texts``, saved with PreTrainedTokenizerFast.save_pretrained; returns it."""
    from transformers import PreTrainedTokenizerFast  # heavy: deferred until used

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.save_pretrained(str(out_dir))
    return fast


def tiny_llama(out_dir: str | os.PathLike, tokenizer, hidden: int = 32, layers: int = 2, seed: int = 0, **kw):
    """A seeded tiny LlamaForCausalLM saved with its tokenizer; returns the model."""
    import torch  # heavy: deferred until used
    from transformers import LlamaConfig, LlamaForCausalLM  # heavy: deferred until used

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=kw.pop("intermediate_size", hidden * 2),
        num_hidden_layers=layers,
        num_attention_heads=kw.pop("num_attention_heads", 4),
        num_key_value_heads=kw.pop("num_key_value_heads", 2),
        max_position_embeddings=kw.pop("max_positions", 256),
        initializer_range=kw.pop("initializer_range", 0.2),  # peaked enough logits for tiny adapters to move
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kw,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return model


def tiny_gpt2(out_dir: str | os.PathLike, tokenizer, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A seeded tiny GPT2LMHeadModel saved with its tokenizer; returns the model."""
    import torch  # heavy: deferred until used
    from transformers import GPT2Config, GPT2LMHeadModel  # heavy: deferred until used

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        n_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return model
