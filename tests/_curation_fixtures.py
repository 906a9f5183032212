"""Small real-text corpora for the curation tests: gettext catalogs (parallel units) and stdlib files.

The signals written here follow the scorer's contract (``id, source, lang, domain, unit_id, bytes, chars,
words, lid_label, lid_score, lid_script, gopher_*, quality_score, tokens_<tok>``) computed from the real text with
real tokenizers, so decide/tpsu/plans tests run before B's scorer lands.
"""

from __future__ import annotations

import gettext
import hashlib
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tokenwise.documents import CORPUS_SCHEMA

LOCALE = Path("/usr/share/locale")
LANGS = ("de", "fr", "es", "ru", "ja", "hi")


def catalog(lang: str, domain: str) -> dict[str, str]:
    """msgid -> msgstr of one installed catalog (singular, non-empty strings only)."""
    path = LOCALE / lang / "LC_MESSAGES" / f"{domain}.mo"
    with open(path, "rb") as f:
        cat = gettext.GNUTranslations(f)._catalog
    return {k: v for k, v in cat.items() if isinstance(k, str) and k and isinstance(v, str) and v.strip()}


def parallel_docs(
    domain: str = "system-config-printer", langs: tuple[str, ...] = LANGS, limit: int = 60
) -> list[dict]:
    """English msgids plus their translations, sharing ``unit_id``; only msgids translated in every language."""
    cats = {lang: catalog(lang, domain) for lang in langs}
    common = sorted(set.intersection(*(set(c) for c in cats.values())), key=lambda s: (len(s), s))
    common = [m for m in common if len(m) > 20]
    common = common[:: max(1, len(common) // limit)][:limit]  # spread over lengths, not only the shortest
    docs = []
    for msgid in common:
        unit = hashlib.blake2b(f"{domain}:{msgid}".encode(), digest_size=6).hexdigest()
        docs.append(_doc(f"{domain}:en:{unit}", msgid, domain, "en", "ui", unit))
        for lang in langs:
            docs.append(_doc(f"{domain}:{lang}:{unit}", cats[lang][msgid], domain, lang, "ui", unit))
    return docs


def stdlib_docs(names: tuple[str, ...] = ("textwrap.py", "shlex.py", "bisect.py", "glob.py")) -> list[dict]:
    """Whole stdlib modules as English code documents."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [_doc(f"stdlib:{n}", (root / n).read_text(encoding="utf-8"), "stdlib", "en", "code", None) for n in names]


def _doc(doc_id: str, text: str, source: str, lang: str, domain: str, unit: str | None) -> dict:
    return {"id": doc_id, "text": text, "source": source, "lang": lang, "domain": domain, "unit_id": unit}


def write_corpus(run: Path, docs: list[dict], shard_size: int = 200) -> list[Path]:
    """Write documents as corpus shards (CORPUS_SCHEMA)."""
    out = run / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(docs), shard_size):
        p = out / f"shard-{i // shard_size:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(docs[i : i + shard_size], schema=CORPUS_SCHEMA), p)
        paths.append(p)
    return paths


def small_bpe(texts: list[str], vocab_size: int = 2000):
    """A byte-level BPE trained on the fixture texts (the second tokenizer, so plans can compare tokenizers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def signal_rows(docs: list[dict]) -> list[dict]:
    """Per-document signals in B's column names, computed from the text (tokens under cl100k and a small BPE)."""
    from tokenwise.tokenizer_specs import HFTokenizer, load_tokenizer

    toks = {"cl100k_base": load_tokenizer("tiktoken:cl100k_base")}
    toks["bpe2k"] = HFTokenizer("bpe2k", small_bpe([d["text"] for d in docs if d["lang"] == "en"]))
    rows = []
    for d in docs:
        words = d["text"].split()
        mean_len = sum(map(len, words)) / len(words) if words else 0.0
        row = {k: d[k] for k in ("id", "source", "lang", "domain", "unit_id")}
        row |= {
            "bytes": len(d["text"].encode()),
            "chars": len(d["text"]),
            "words": len(words),
            "lid_label": d["lang"],
            "lid_score": 0.5 + 0.5 * (len(d["text"]) % 97) / 97,
            "lid_script": "Latn",
            "gopher_n_words": len(words),
            "gopher_mean_word_length": mean_len,
            "quality_score": len(set(words)) / max(1, len(words)),
        }
        for name, tok in toks.items():
            row[f"tokens_{name}"] = len(tok.encode(d["text"]))
        rows.append(row)
    return rows


def write_signals(run: Path, docs: list[dict], shard_size: int = 200) -> None:
    """Write signal shards aligned with the corpus shards."""
    out = run / "signals"
    out.mkdir(parents=True, exist_ok=True)
    rows = signal_rows(docs)
    for i in range(0, len(rows), shard_size):
        pq.write_table(pa.Table.from_pylist(rows[i : i + shard_size]), out / f"shard-{i // shard_size:05d}.parquet")
