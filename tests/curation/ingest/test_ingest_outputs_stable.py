"""The corpus build's decoded outputs (documents in order, quarantine rows, stats) match values recorded from the
reader before the single-parse JSONL path (issue 22): shard bytes may change, what they hold may not.

The input mixes every bad-line kind with good lines across many 64 KiB blocks (duplicate ids before and after valid
lines that need the exact path, generated ids, CRLF, blank and indented lines, a BOM, a gzip file), so each block
takes a different route through the reader. ``_ingest_expected.json`` was written by ``_record()`` on the old reader;
regenerate it only for a deliberate change of outputs (``python tests/curation/ingest/test_ingest_outputs_stable.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.ingest.build import CorpusConfig, build

EXPECTED = Path(__file__).with_name("_ingest_expected.json")
WORDS = "the of data Datei öffnen système файл ファイル 文件 파일 ملف फ़ाइल ফাইল".split()
BAD = [
    b"{truncated", b'{"text": 42}', b"[1, 2]", b'{"text": ""}', b'{"text": "bad \xff utf8"}', b'{"text": null}',
    b'{"text": "x", "meta": "\xfe ignored key"}', b"\xef\xbb\xbf" + b'{"text": "bom mid-file"}', b'"a string"',
    b'{"text": "nul \\u0000 in text"}', b'{"text": "   "}', b'{"body": "no text key"}', b'{"text": ["a"]}',
    b'{"text": "bad lang", "lang": ["x"]}', b'{"text": "two"}{"text": "objects"}', b'{"text": "a" "b"}', b"null",
]  # fmt: skip


def _lines(rng: random.Random, n: int, start: int) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        rec = {"id": f"doc-{i}", "text": f"Document {i}. " + " ".join(rng.choices(WORDS, k=rng.randint(5, 120)))}
        if i % 11 == 0:
            del rec["id"]  # generated id: source:file:line
        if i % 7 == 0:
            rec["lang"] = rng.choice(["en", "de", "ja", None])
        if i % 13 == 0:
            rec["domain"] = "docs"
        if i % 17 == 0:
            rec["unit_id"] = f"u{i % 5}"
        if i % 29 == 0:
            rec["extra"] = {"nested": [1, 2]}
        out.append(json.dumps(rec, ensure_ascii=i % 3 == 0).encode())
        r = rng.random()
        if r < 0.02:
            out.append(rng.choice(BAD))
        elif r < 0.025:  # a valid line that needs the exact path (NUL escape in an ignored key), then its duplicate
            out.append(json.dumps({"text": f"kept {i}", "id": f"dup-{i}", "note": "\u0000"}).encode())
            out.append(json.dumps({"text": f"dropped {i}", "id": f"dup-{i}"}).encode())
        elif r < 0.03:  # a good line, then a later duplicate of an earlier id
            out.append(json.dumps({"text": f"again {i}", "id": f"doc-{i - 40}"}).encode())
        elif r < 0.035:
            out.append(b"")
        elif r < 0.04:
            out.append(b"   " + json.dumps({"text": f"indented {i}"}).encode())
        elif r < 0.045:
            out.append(json.dumps({"text": f"too big {i} " + "z" * 40_000}).encode())
    return out


def _inputs(tmp: Path) -> Path:
    rng = random.Random(22)
    data = tmp / "data"
    data.mkdir(parents=True)
    (data / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(_lines(rng, 1500, 0)) + b"\n")
    (data / "b.jsonl").write_bytes(b"\r\n".join(_lines(rng, 800, 1500)))  # CRLF, no final newline
    (data / "c.jsonl.gz").write_bytes(gzip.compress(b"\n".join(_lines(rng, 700, 2300)) + b"\n"))
    return data


def _decoded(tmp: Path, block_bytes: int = 1 << 16) -> dict:
    data = _inputs(tmp)
    cfg = CorpusConfig.model_validate({
        "sources": [{"type": "jsonl", "name": "s", "paths": [str(data)], "lang": "und"}],
        "block_bytes": block_bytes, "max_doc_bytes": 32_000, "shard_bytes": 1 << 20, "row_group_bytes": 1 << 18,
    })  # fmt: skip
    run = tmp / "run"
    m = build(cfg, str(run))
    rows = []
    for s in m["shards"]:
        rows.extend(pq.read_table(run / "corpus" / s["name"]).to_pylist())
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    quarantine = []
    for line in (run / "corpus" / "quarantine" / "rank-00000.jsonl").read_text().splitlines():
        q = json.loads(line)
        q["file"] = Path(q["file"]).name
        quarantine.append(q)
    stats = json.loads((run / "corpus" / "stats" / "rank-00000.json").read_text())
    stats["files"] = {Path(k).name: v for k, v in stats["files"].items()}
    stats.pop("shards")
    keep = ("documents", "bytes", "records", "quarantine_reasons", "by_lang", "by_source", "by_domain")
    return {"documents_sha256": digest, "documents": len(rows), "first_ids": [r["id"] for r in rows[:5]],
            "ids_sha256": hashlib.sha256("\n".join(r["id"] for r in rows).encode()).hexdigest(),
            "quarantine": quarantine, "stats": stats, "manifest": {k: m[k] for k in keep},
            "shard_rows": sum(s["rows"] for s in m["shards"])}  # fmt: skip


def _norm(d: dict) -> dict:
    return json.loads(json.dumps(d, sort_keys=True))


@pytest.mark.parametrize("block_bytes", [1 << 16, 1 << 20])
def test_decoded_outputs_match_the_recorded_ones(tmp_path, block_bytes):
    got, want = _norm(_decoded(tmp_path, block_bytes)), json.loads(EXPECTED.read_text())
    assert got["quarantine"] == want["quarantine"]
    assert got["stats"] == want["stats"]
    assert got["manifest"] == want["manifest"]
    assert got == want


def _record() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        EXPECTED.write_text(json.dumps(_norm(_decoded(Path(tmp))), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {EXPECTED}", file=sys.stderr)


if __name__ == "__main__":
    _record()
