"""Readers: each bad input becomes one quarantine record with its exact reason and line; the rest are documents."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.ingest.readers import (
    REASONS,
    IdSet,
    ReadOptions,
    iter_documents,
    iter_hf_files,
    iter_jsonl,
    iter_parquet,
    read_hf_disk,
    read_jsonl,
    read_parquet,
    read_text_dir,
)
from tokenwise.documents import CORPUS_SCHEMA, Document, Quarantined

# (raw line, expected reason or None for a kept document)
JSONL_CASES = [
    (b'{"text": "first good", "id": "a"}', None),
    (b'{"text": "broken', "invalid_json"),
    (b'{"text": "caf\xe9"}', "invalid_utf8"),
    (b'{"text": "nul\x00byte"}', "nul_bytes"),
    (b'{"text": "escaped nul \\u0000"}', "nul_bytes"),
    (b"[1, 2, 3]", "not_an_object"),
    (b"42", "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"body": "no text key"}', "missing_text"),
    (b'{"text": null}', "missing_text"),
    (b'{"text": 17}', "text_not_string"),
    (b'{"text": ["a"]}', "text_not_string"),
    (b'{"text": ""}', "empty_text"),
    (b'{"text": " \\n\\t "}', "empty_text"),
    (b'{"text": "dup", "id": "a"}', "duplicate_id"),
    (b'{"text": "bad id", "id": {"x": 1}}', "bad_field"),
    (b'{"text": "int id", "id": 7, "lang": "de", "domain": "docs", "unit_id": "u1"}', None),
    (b"", None),  # blank lines are not records
    (b'{"text": "last good"}', None),
]


def _split(items):
    items = list(items)
    docs = [x for x in items if isinstance(x, Document)]
    bad = [x for x in items if isinstance(x, Quarantined)]
    return docs, bad


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.jsonl.gz", "cases.jsonl.zst"])
def test_jsonl_every_bad_case_has_its_reason_and_line(write_lines, name):
    path = write_lines(name, [raw for raw, _ in JSONL_CASES])
    docs, bad = _split(read_jsonl(path, source="t", seen_ids=IdSet()))
    expected = {i + 1: r for i, (_, r) in enumerate(JSONL_CASES) if r}
    assert {q.line: q.reason for q in bad} == expected
    assert all(q.file == str(path) and q.offset is not None for q in bad)
    assert {q.reason for q in bad} <= set(REASONS)
    assert [d.text for d in docs] == ["first good", "int id", "last good"]
    assert docs[1].id == "7" and (docs[1].lang, docs[1].domain, docs[1].unit_id) == ("de", "docs", "u1")
    assert docs[2].id == f"t:{path.name}:{len(JSONL_CASES)}"  # generated: source:file:line
    records = sum(1 for raw, _ in JSONL_CASES if raw)
    assert len(docs) + len(bad) == records


def test_quarantine_offsets_point_at_the_line(write_lines):
    path = write_lines("o.jsonl", [b'{"text": "ok"}', b"{bad json}", b'{"text": "ok2"}'])
    _, bad = _split(read_jsonl(path))
    assert bad[0].offset == len(b'{"text": "ok"}\n') and bad[0].snippet == "{bad json}"


def test_vectorised_blocks_and_bisected_fallback_agree_with_exact_lines(write_lines):
    lines = [json.dumps({"text": f"document number {i} " * 5, "id": f"d{i}"}).encode() for i in range(6000)]
    bad_at = {17: b"{oops", 2500: b'{"text": 3}', 5999: b'{"text": "   "}'}
    for i, raw in bad_at.items():
        lines[i] = raw
    path = write_lines("big.jsonl", lines)
    opts = ReadOptions(source="b", block_bytes=1 << 16, max_doc_bytes=1 << 15, seen_ids=IdSet())
    batches = list(iter_jsonl(path, opts))
    tables = [b for b in batches if isinstance(b, pa.Table)]
    bad = [b for b in batches if isinstance(b, Quarantined)]
    assert {q.line: q.reason for q in bad} == {18: "invalid_json", 2501: "text_not_string", 6000: "empty_text"}
    ids = pa.concat_tables(tables).column("id").to_pylist()
    assert ids == [f"d{i}" for i in range(6000) if i not in bad_at]
    assert all(t.schema.equals(CORPUS_SCHEMA) for t in tables)
    assert len(tables) < 200, "good blocks must be parsed whole, not line by line"


def test_located_bad_lines_keep_one_parse_per_block_and_syntax_errors_fall_back(write_lines, monkeypatch):
    from curation.ingest import readers

    split_lines, real = [], readers._parse_split

    def spy(block, offset, line, *rest):  # the real fallback, counted
        split_lines.append(line)
        return (yield from real(block, offset, line, *rest))

    monkeypatch.setattr(readers, "_parse_split", spy)
    lines = [json.dumps({"text": f"document number {i} " * 5, "id": f"d{i}"}).encode() for i in range(3000)]
    located = {5: b"{oops", 700: b'{"text": 3}', 1400: b'{"text": "caf\xe9"}', 2100: b"[1]", 2999: b'{"text": ""}'}
    for i, raw in located.items():
        lines[i] = raw
    opts = ReadOptions(source="b", block_bytes=1 << 16, seen_ids=IdSet())
    docs, bad = _split(iter_documents(iter_jsonl(write_lines("located.jsonl", lines), opts)))
    assert [(q.line, q.reason) for q in bad] == [(6, "invalid_json"), (701, "text_not_string"),
                                                 (1401, "invalid_utf8"), (2101, "not_an_object"), (3000, "empty_text")]
    assert len(docs) == 3000 - len(located) and split_lines == [], "located bad lines must not split a block"
    lines[1500] = b'{"text": "a" "b"}'  # inside {...}: only polars finds it, so this block takes the split route
    docs, bad = _split(read_jsonl(write_lines("syntax.jsonl", lines), source="b", block_bytes=1 << 16))
    assert (1501, "invalid_json") in [(q.line, q.reason) for q in bad]
    assert len(split_lines) == 2 and split_lines[0] <= 1501 < split_lines[1], "that block and the next, then whole"
    assert len(docs) == 3000 - len(located) - 1


def test_duplicate_ids_across_blocks_are_quarantined(write_lines):
    lines = [json.dumps({"text": "x" * 50, "id": f"id{i % 1500}"}).encode() for i in range(2000)]
    path = write_lines("dups.jsonl", lines)
    docs, bad = _split(read_jsonl(path, seen_ids=IdSet(), block_bytes=1 << 16))
    assert len(docs) == 1500 and len(bad) == 500
    assert {q.reason for q in bad} == {"duplicate_id"} and min(q.line for q in bad) == 1501


def test_oversize_line_is_skipped_while_streaming(write_lines):
    huge = b'{"text": "' + b"z" * 300_000 + b'"}'
    path = write_lines("huge.jsonl", [b'{"text": "before"}', huge, b'{"text": "after"}'])
    docs, bad = _split(read_jsonl(path, max_doc_bytes=100_000, block_bytes=1 << 16))
    assert [d.text for d in docs] == ["before", "after"]
    assert [(q.reason, q.line) for q in bad] == [("too_large", 2)] and len(bad[0].snippet) <= 120


def test_oversize_text_within_a_block_is_too_large(write_lines):
    path = write_lines("big_text.jsonl", [json.dumps({"text": "w" * 5000}).encode(), b'{"text": "ok"}'])
    docs, bad = _split(read_jsonl(path, max_doc_bytes=2048))
    assert [d.text for d in docs] == ["ok"] and [(q.reason, q.line) for q in bad] == [("too_large", 1)]


def test_empty_binary_truncated_and_missing_files(tmp_path, write_lines):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 64)
    good = gzip.compress(b"".join(b'{"text": "line %d"}\n' % i for i in range(5000)))
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    reasons = {}
    for name in ("empty.jsonl", "blank.jsonl", "binary.jsonl", "cut.jsonl.gz", "missing.jsonl"):
        docs, bad = _split(read_jsonl(tmp_path / name))
        reasons[name] = ([q.reason for q in bad], len(docs))
    assert reasons["empty.jsonl"] == (["empty_file"], 0)
    assert reasons["blank.jsonl"] == (["empty_file"], 0)
    assert reasons["binary.jsonl"] == (["binary_file"], 0)
    assert reasons["cut.jsonl.gz"][0][-1] == "truncated_file" and reasons["cut.jsonl.gz"][1] > 0
    assert reasons["missing.jsonl"] == (["unreadable_file"], 0)


def test_field_mapping(write_lines):
    path = write_lines("m.jsonl", [b'{"content": "hola", "key": "k1", "language": "es", "kind": "docs"}'])
    fields = {"text": "content", "id": "key", "lang": "language", "domain": "kind", "unit_id": None}
    from curation.ingest.readers import FieldMap

    (doc,) = read_jsonl(path, source="m", fields=FieldMap(**fields))
    assert (doc.id, doc.text, doc.lang, doc.domain, doc.source) == ("k1", "hola", "es", "docs", "m")


def test_parquet_good_and_bad_rows(tmp_path):
    good = pa.table({"text": ["alpha", "beta", "gamma"], "id": ["a", "b", "c"], "extra": [1, 2, 3]})
    pq.write_table(good, tmp_path / "good.parquet")
    mixed = pa.table(
        {"text": ["fine", None, "  ", "dup", "nul\x00", "y" * 3000], "id": ["x", "y", "z", "x", "n", "b"]}
    )
    pq.write_table(mixed, tmp_path / "mixed.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    (tmp_path / "empty.parquet").write_bytes(b"")
    docs, bad = _split(read_parquet(tmp_path / "good.parquet", seen_ids=IdSet()))
    assert [d.id for d in docs] == ["a", "b", "c"] and not bad
    docs, bad = _split(read_parquet(tmp_path / "mixed.parquet", seen_ids=IdSet(), max_doc_bytes=2048))
    assert [d.text for d in docs] == ["fine"]
    assert [(q.line, q.reason) for q in bad] == [
        (2, "missing_text"), (3, "empty_text"), (4, "duplicate_id"), (5, "nul_bytes"), (6, "too_large")
    ]  # fmt: skip
    _, bad = _split(read_parquet(tmp_path / "ints.parquet"))
    assert [q.reason for q in bad] == ["text_not_string"] * 2
    assert [q.reason for q in read_parquet(tmp_path / "corrupt.parquet")] == ["invalid_parquet"]
    assert [q.reason for q in read_parquet(tmp_path / "empty.parquet")] == ["empty_file"]


def test_parquet_streams_in_row_batches(tmp_path):
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(5000)]}), tmp_path / "p.parquet", row_group_size=1000)
    batches = list(iter_parquet(tmp_path / "p.parquet", ReadOptions(source="p", batch_rows=700)))
    assert max(b.num_rows for b in batches) <= 700 and sum(b.num_rows for b in batches) == 5000
    assert batches[-1].column("id")[-1].as_py() == "p:p.parquet:5000"


def test_text_dir_one_document_per_file_and_bad_files(tmp_path):
    d = tmp_path / "prose"
    (d / "sub").mkdir(parents=True)
    (d / "a.md").write_text("# Title\n\nSome prose.")
    (d / "sub" / "b.rst").write_text("Heading\n=======\n\nMore prose.")
    (d / "c.txt").write_text("plain text")
    (d / "README.gz").write_bytes(gzip.compress(b"compressed readme text"))
    (d / "empty.txt").write_bytes(b"")
    (d / "space.md").write_text("   \n\n ")
    (d / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "nul.md").write_bytes(b"text with a \x00 byte")
    (d / "big.txt").write_text("x" * 5000)
    (d / "skip.py").write_text("print('not prose')")
    items = list(read_text_dir(d, source="p", patterns=["*.md", "*.rst", "*.txt", "*.gz"], max_doc_bytes=4096))
    docs, bad = _split(items)
    assert sorted(d.id for d in docs) == ["p:README.gz", "p:a.md", "p:c.txt", "p:sub/b.rst"]
    assert {d.text for d in docs} >= {"compressed readme text", "plain text"}
    assert {q.file.rsplit("/", 1)[-1]: q.reason for q in bad} == {
        "empty.txt": "empty_file",
        "space.md": "empty_text",
        "binary.txt": "binary_file",
        "latin1.txt": "invalid_utf8",
        "nul.md": "nul_bytes",
        "big.txt": "too_large",
    }


def _hf_rows():
    return {"text": ["uno", "", "tres", None], "id": ["1", "2", "3", "4"]}


def test_hf_save_to_disk_dataset_and_datasetdict(tmp_path):
    import datasets

    datasets.Dataset.from_dict(_hf_rows()).save_to_disk(str(tmp_path / "ds"))
    docs, bad = _split(read_hf_disk(tmp_path / "ds", source="hf"))
    assert [d.text for d in docs] == ["uno", "tres"] and [q.reason for q in bad] == ["empty_text", "missing_text"]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a1", "a2"]}),
            "test": datasets.Dataset.from_dict({"text": ["b"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    docs, _ = _split(read_hf_disk(tmp_path / "dd", source="hf"))
    assert sorted(d.text for d in docs) == ["a1", "a2", "b"] and len({d.id for d in docs}) == 3
    assert [q.reason for q in read_hf_disk(tmp_path / "nope", source="hf")] == ["invalid_dataset"]


def test_hf_local_data_files_offline(tmp_path, write_lines):
    path = write_lines("hf.jsonl", [b'{"text": "from datasets", "id": "h1"}', b'{"text": ""}'])
    batches = list(iter_hf_files([str(path)], "json", ReadOptions(source="hf")))
    tables = [b for b in batches if isinstance(b, pa.Table)]
    assert pa.concat_tables(tables).column("text").to_pylist() == ["from datasets"]
    assert [b.reason for b in batches if isinstance(b, Quarantined)] == ["empty_text"]


def test_idset_detects_duplicates_across_compactions():
    ids = IdSet(recent_max=10)
    assert not any(ids.add([f"x{i}"])[0] for i in range(100))
    assert ids.add(["x3", "x99", "new", "new"]).tolist() == [True, True, False, True]


@pytest.mark.parametrize("block_bytes", [512, 1000, 4096])
def test_block_cuts_keep_every_line_and_number(tmp_path, block_bytes):
    """Whatever the block size (cuts inside lines, remainders after a skipped over-long line that hold several lines),
    every record is read once with its own line number."""
    lines = []
    for i in range(300):
        if i in (40, 41, 170):
            lines.append(json.dumps({"text": "x" * 3000}).encode())  # over max_doc_bytes: skipped while streaming
        elif i % 37 == 5:
            lines.append(b'{"text": "broken')
        else:
            lines.append(json.dumps({"text": f"doc {i} " + "y" * (i % 97), "id": f"d{i}"}).encode())
    path = tmp_path / "cuts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    docs, bad = _split(read_jsonl(path, max_doc_bytes=2000, block_bytes=block_bytes))
    expect_bad = [(i + 1, "too_large" if i in (40, 41, 170) else "invalid_json")
                  for i in range(300) if i in (40, 41, 170) or i % 37 == 5]  # fmt: skip
    assert sorted((q.line, q.reason) for q in bad) == expect_bad
    kept = [i for i in range(300) if (i + 1) not in {ln for ln, _ in expect_bad}]
    assert [d.id for d in docs] == [f"d{i}" for i in kept]
    assert [d.text for d in docs] == [f"doc {i} " + "y" * (i % 97) for i in kept]
