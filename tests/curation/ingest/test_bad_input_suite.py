"""Bad inputs through every reader (JSONL, Parquet, text dirs, gettext) and every stage, with nothing lost.

Each case below states its outcome: a quarantine record with its reason and location (file + line, or file alone
for whole-file problems), a kept document, or one clear fatal error. The end-to-end test builds one corpus from all
of them, runs the real score/dedup/decide stages, and checks that every input record is accounted for:
``records read = kept + dropped + quarantined`` (ingestion, scorer and decide quarantines summed).

Unreadable files: the tests run as root, and root ignores permission bits, so ``chmod 000`` does not deny anything.
The cases that really cannot be read here are a FIFO named ``.jsonl`` (opening it would block forever; readers
refuse non-regular files), a dangling symlink, a file deleted after the build listed it ("vanishes mid-run") and a
file replaced by a directory after it was listed. A ``chmod 000`` file is kept when running as root and is
``unreadable_file`` otherwise; the test asserts whichever applies.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curation.ingest.readers import REASONS, IdSet, read_jsonl, read_parquet, read_text_dir
from serving.decode.tiny import stdlib_texts
from tokenwise.documents import CORPUS_SCHEMA, Document, Quarantined

HUGE = 20 << 20  # a 20 MB single-line document
DEEP = 100_000  # nesting depth of the deeply nested record

# name -> (raw bytes, [(reason, line or None for whole-file)], documents kept); a line's number counts from 1
JSONL_CASES: dict[str, tuple[bytes, list[tuple[str, int | None]], int]] = {
    "truncated_line": (b'{"text": "complete line", "id": "t1"}\n{"text": "cut in the mid', [("invalid_json", 2)], 1),
    "invalid_utf8": (b'{"text": "ok one"}\n{"text": "caf\xe9 latin-1"}\n', [("invalid_utf8", 2)], 1),
    "nul_bytes": (b'{"text": "raw nul \x00 here"}\n{"text": "escaped nul \\u0000"}\n',
                  [("nul_bytes", 1), ("nul_bytes", 2)], 0),
    "crlf_mixed": (b'{"text": "crlf one"}\r\n{"text": "lf two"}\n{"text": "crlf three"}\r\n', [], 3),
    "array_line": (b"[1, 2, 3]\n", [("not_an_object", 1)], 0),
    "number_line": (b"42\n", [("not_an_object", 1)], 0),
    "string_line": (b'"just a string"\n', [("not_an_object", 1)], 0),
    "missing_text": (b'{"body": "no text key"}\n{"text": null}\n', [("missing_text", 1), ("missing_text", 2)], 0),
    "non_string_text": (b'{"text": 17}\n{"text": ["a"]}\n{"text": {"a": 1}}\n',
                        [("text_not_string", i) for i in (1, 2, 3)], 0),
    "empty_text": (b'{"text": ""}\n', [("empty_text", 1)], 0),
    "whitespace_text": (b'{"text": " \\n\\t \\r\\n "}\n', [("empty_text", 1)], 0),
    "deeply_nested": (b'{"text": "ok", "meta": ' + b"[" * DEEP + b"]" * DEEP + b'}\n{"text": "after deep"}\n',
                      [("invalid_json", 1)], 1),
    "huge_line": (json.dumps({"text": "w" * HUGE}).encode() + b'\n{"text": "after huge"}\n', [("too_large", 1)], 1),
    "binary": (bytes(range(256)) * 64, [("binary_file", None)], 0),
    "bom_first_line": (b'\xef\xbb\xbf{"text": "first record after a BOM"}\n{"text": "second"}\n', [], 2),
    "gzip_without_suffix": (gzip.compress(b'{"text": "packed"}\n' * 50), [("binary_file", None)], 0),
    "empty": (b"", [("empty_file", None)], 0),
}  # fmt: skip

# text_dir: one file = one document; name -> (raw bytes, reason or None when kept)
TEXT_CASES: dict[str, tuple[bytes, str | None]] = {
    "invalid_utf8.txt": (b"caf\xe9 au lait", "invalid_utf8"),
    "nul_bytes.txt": (b"text with a \x00 byte", "nul_bytes"),
    "crlf_mixed.txt": (b"line one\r\nline two\nline three\r\n", None),
    "empty.txt": (b"", "empty_file"),
    "whitespace.txt": (b"  \r\n\t \n", "empty_text"),
    "binary.txt": (bytes(range(256)) * 16, "binary_file"),
    "huge.txt": (b"w" * HUGE, "too_large"),
    "json_array.txt": (b"[1, 2, 3]", None),  # prose readers take any text; JSON-looking text is just text
}

# parquet rows: text value -> reason or None when kept (row numbers count from 1, like JSONL lines)
PARQUET_ROWS: list[tuple[str | None, str | None]] = [
    ("a good parquet row", None),
    (None, "missing_text"),
    ("", "empty_text"),
    (" \t\r\n", "empty_text"),
    ("nul \x00 inside", "nul_bytes"),
    ("crlf\r\nand lf\n", None),
    ("w" * HUGE, "too_large"),
]


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(data, compresslevel=1)
    if suffix == ".zst":
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


def _split(items) -> tuple[list[Document], list[Quarantined]]:
    items = list(items)
    return [x for x in items if isinstance(x, Document)], [x for x in items if isinstance(x, Quarantined)]


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_jsonl_reader_outcome_table(tmp_path, case, suffix):
    raw, expected, kept = JSONL_CASES[case]
    path = tmp_path / f"{case}.jsonl{suffix}"
    path.write_bytes(_compress(raw, suffix))
    docs, bad = _split(read_jsonl(path, source="s", seen_ids=IdSet()))
    assert [(q.reason, q.line) for q in bad] == expected
    assert all(q.file == str(path) and q.reason in REASONS and q.detail for q in bad)
    assert all(q.offset is not None for q in bad if q.line is not None), "line-level records need a byte offset"
    assert len(docs) == kept
    if case == "crlf_mixed":
        assert [d.text for d in docs] == ["crlf one", "lf two", "crlf three"]


# issue 22's bad-input fixes: name -> (file name, bytes or a Parquet table, [(reason, line)], documents kept,
# [text each quarantine record's detail must hold, in order])
FIX_CASES: dict[str, tuple[str, bytes | pa.Table, list[tuple[str, int | None]], int, list[str]]] = {
    "jsonl_starting_with_utf8_bom": ("bom.jsonl", b'\xef\xbb\xbf{"text": "first"}\n{"text": "second"}\n', [], 2, []),
    "null_text_vs_missing_key": ("nulls.jsonl", b'{"body": "x", "id": "b1"}\n{"text": null}\n',
                                 [("missing_text", 1), ("missing_text", 2)], 0,
                                 ["no 'text' key; keys: 'body', 'id'", "'text' is null"]),
    "text_under_another_key": ("content.jsonl", b'{"id": "c1", "content": "the text is here", "n": 3}\n',
                               [("missing_text", 1)], 0, ["map it in the source config: `fields: {text: content}`"]),
    "non_object_lines": ("scalars.jsonl", b'null\n"a string"\n42\n[1]\ntrue\n',
                         [("not_an_object", i) for i in range(1, 6)], 0,
                         [f"a JSON {k}, not an object" for k in ("null", "string", "number", "array", "boolean")]),
    "gzip_without_gz_suffix": ("packed.jsonl", gzip.compress(b'{"text": "packed"}\n' * 50), [("binary_file", None)],
                               0, ["gzip-compressed data without a .gz suffix: rename it to packed.jsonl.gz"]),
    "parquet_without_text_column": ("cols.parquet",
                                    pa.table({"id": ["a", "b"], "content": ["one", "two"], "n": [1, 2]}),
                                    [("missing_text", 1), ("missing_text", 2)], 0,
                                    ["no 'text' column; columns: 'id', 'content', 'n'; if 'content' holds the text, "
                                     "map it in the source config: `fields: {text: content}`"] * 2),
    "parquet_rows_count_from_1": ("rows.parquet", pa.table({"text": ["ok", None, "fine"]}), [("missing_text", 2)], 2,
                                  ["'text' is null"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FIX_CASES))
def test_bad_input_fixes_table(tmp_path, case):
    name, data, expected, kept, details = FIX_CASES[case]
    path = tmp_path / name
    if isinstance(data, pa.Table):
        pq.write_table(data, path)
        docs, bad = _split(read_parquet(path, seen_ids=IdSet()))
    else:
        path.write_bytes(data)
        docs, bad = _split(read_jsonl(path, seen_ids=IdSet()))
    assert [(q.reason, q.line) for q in bad] == expected
    assert len(docs) == kept
    for q, want in zip(bad, details, strict=True):
        assert want in q.detail, (q.detail, want)
    if case == "jsonl_starting_with_utf8_bom":
        assert [d.text for d in docs] == ["first", "second"]
    if case == "gzip_without_gz_suffix":
        assert bad[0].snippet == "", "no binary snippet for a compressed file"


def test_text_dir_reader_outcome_table(tmp_path):
    d = tmp_path / "prose"
    d.mkdir()
    for name, (raw, _) in TEXT_CASES.items():
        (d / name).write_bytes(raw)
    docs, bad = _split(read_text_dir(d, source="p", patterns=["*.txt"]))
    assert {Path(q.file).name: q.reason for q in bad} == {n: r for n, (_, r) in TEXT_CASES.items() if r}
    assert {d.id for d in docs} == {f"p:{n}" for n, (_, r) in TEXT_CASES.items() if r is None}
    assert next(x.text for x in docs if x.id == "p:crlf_mixed.txt") == "line one\r\nline two\nline three\r\n"


def test_parquet_reader_outcome_table(tmp_path):
    pq.write_table(pa.table({"text": [t for t, _ in PARQUET_ROWS]}), tmp_path / "rows.parquet")
    docs, bad = _split(read_parquet(tmp_path / "rows.parquet", seen_ids=IdSet()))
    assert [(q.line, q.reason) for q in bad] == [(i, r) for i, (_, r) in enumerate(PARQUET_ROWS, 1) if r]
    assert len(docs) == sum(r is None for _, r in PARQUET_ROWS)
    pq.write_table(pa.table({"text": [{"a": 1}, {"a": 2}]}), tmp_path / "nested.parquet")
    assert [q.reason for q in read_parquet(tmp_path / "nested.parquet")] == ["text_not_string"] * 2
    good = (tmp_path / "rows.parquet").read_bytes()
    whole_file = {
        "truncated.parquet": (good[: len(good) // 2], "invalid_parquet"),
        "binary.parquet": (bytes(range(256)) * 8, "invalid_parquet"),
        "empty.parquet": (b"", "empty_file"),
    }
    for name, (raw, reason) in whole_file.items():
        (tmp_path / name).write_bytes(raw)
        assert [q.reason for q in read_parquet(tmp_path / name)] == [reason], name
    os.mkfifo(tmp_path / "fifo.parquet")
    for name in ("fifo.parquet", "vanished.parquet"):
        assert [q.reason for q in read_parquet(tmp_path / name)] == ["unreadable_file"], name


def test_gettext_catalog_reader_outcome_table(tmp_path):
    from conftest import MO_HEADER, mo_bytes

    from curation.ingest.mo_catalogs import iter_catalog
    from curation.ingest.readers import ReadOptions

    raw = mo_bytes({"": MO_HEADER, "Open the selected file": "Ausgewählte Datei öffnen", "Close it": "Schließen"})
    cases = {  # name -> (bytes, quarantine reasons, documents kept)
        "good.mo": (raw, [], 4),
        "truncated.mo": (raw[: len(raw) // 2], ["invalid_mo"], 0),
        "cut_strings.mo": (raw[:-10], ["invalid_mo"], 0),
        "binary.mo": (bytes(range(256)) * 4, ["invalid_mo"], 0),
        "empty.mo": (b"", ["invalid_mo"], 0),
        "latin1.mo": (raw.replace("ö".encode(), b"\xf6"), ["invalid_utf8"], 2),  # the bad msgstr, not the catalog
    }
    for name, (data, reasons, kept) in cases.items():
        (tmp_path / name).write_bytes(data)
        out = list(iter_catalog("app", "de", str(tmp_path / name), set(), ReadOptions(source="gettext"), 1, 1,
                                Counter()))  # fmt: skip
        bad = [x for x in out if isinstance(x, Quarantined)]
        assert [q.reason for q in bad] == reasons and all(q.file == str(tmp_path / name) for q in bad), name
        assert sum(x.num_rows for x in out if isinstance(x, pa.Table)) == kept, name


def test_unreadable_paths_never_hang_or_crash_a_reader(tmp_path):
    os.mkfifo(tmp_path / "fifo.jsonl")  # opening a FIFO with no writer would block forever
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "prose").mkdir()
    os.mkfifo(tmp_path / "prose" / "fifo.txt")
    for name in ("fifo.jsonl", "dangling.jsonl", "dir.jsonl", "missing.jsonl"):
        bad = list(read_jsonl(tmp_path / name))
        assert [(q.reason, q.file) for q in bad] == [("unreadable_file", str(tmp_path / name))], name
        assert "regular file" in bad[0].detail or "No such file" in bad[0].detail
    locked = tmp_path / "locked.jsonl"
    locked.write_bytes(b'{"text": "behind chmod 000"}\n')
    locked.chmod(0)
    docs, bad = _split(read_jsonl(locked))
    if os.geteuid() == 0:  # root reads through permission bits
        assert len(docs) == 1 and not bad
    else:
        assert [q.reason for q in bad] == ["unreadable_file"] and not docs


# ---------------------------------------------------------------- every stage, end to end


def _good_lines(n: int) -> list[bytes]:
    return [json.dumps({"text": t, "id": f"good-{i}"}).encode() for i, t in enumerate(stdlib_texts(n, max_chars=1500))]


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """All bad inputs plus good documents through corpus build -> score -> dedup -> decide (the real stages)."""
    from curation.decide.decisions import DecideConfig, run_decide
    from curation.ingest import build as corpus
    from curation.ingest.build import CorpusConfig, build
    from curation.signals.dedup import DedupConfig, run_dedup
    from curation.signals.score import ScoreConfig, score_run

    root = tmp_path_factory.mktemp("bad_suite")
    data, prose = root / "data", root / "prose"
    data.mkdir()
    prose.mkdir()
    for name, (raw, _, _) in JSONL_CASES.items():
        (data / f"{name}.jsonl").write_bytes(raw)
    good = _good_lines(24)
    (data / "good.jsonl").write_bytes(b"\n".join(good[:20] + good[:2]) + b"\n")  # two exact duplicates of ids
    (data / "vanishes.jsonl").write_bytes(b'{"text": "listed, then deleted"}\n')
    (data / "replaced.jsonl").write_bytes(b'{"text": "listed, then replaced by a directory"}\n')
    os.mkfifo(data / "fifo.jsonl")
    (data / "dangling.jsonl").symlink_to(root / "nowhere.jsonl")
    for name, (raw, _) in TEXT_CASES.items():
        (prose / name).write_bytes(raw)
    pq.write_table(pa.table({"text": [t for t, _ in PARQUET_ROWS]}), data / "rows.parquet")
    cfg = CorpusConfig.model_validate(
        {
            "sources": [
                {"type": "jsonl", "name": "bad", "paths": [str(data)], "domain": "docs", "lang": "en"},
                {"type": "parquet", "name": "pq", "paths": [str(data / "rows.parquet")], "lang": "en"},
                {"type": "text_dir", "name": "prose", "paths": [str(prose)], "patterns": ["*.txt"],
                 "max_file_bytes": 64 << 20, "lang": "en"},
            ],
            "tasks": 1, "workers": 1, "shard_bytes": 16 << 10,
        }
    )  # fmt: skip
    real_plan = corpus.plan

    def plan_then_vanish(c):
        items = real_plan(c)  # the real listing; then one file disappears and one becomes a directory
        (data / "vanishes.jsonl").unlink()
        (data / "replaced.jsonl").unlink()
        (data / "replaced.jsonl").mkdir()
        return items

    mp = pytest.MonkeyPatch()
    mp.setattr(corpus, "plan", plan_then_vanish)
    try:
        run = root / "run"
        manifest = build(cfg, str(run))
    finally:
        mp.undo()
    score = score_run(ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1),
                      str(run))  # fmt: skip
    dedup = run_dedup(str(run), DedupConfig())
    decide = run_decide(str(run), DecideConfig(allowed_langs=None))
    return root, manifest, score, dedup, decide


def _expected_corpus_quarantine() -> Counter:
    exp = Counter(r for _, cases, _ in JSONL_CASES.values() for r, _ in cases)
    exp += Counter(r for _, r in TEXT_CASES.values() if r)
    exp += Counter(r for _, r in PARQUET_ROWS if r)
    exp["duplicate_id"] += 2
    exp["unreadable_file"] += 4  # vanished, replaced by a directory, FIFO, dangling symlink
    return exp


def test_corpus_build_quarantines_every_case_with_reason_and_location(curated):
    root, m, *_ = curated
    assert Counter(m["quarantine_reasons"]) == _expected_corpus_quarantine()
    records = [json.loads(x) for f in m["quarantine_files"] for x in (root / "run/corpus" / f).open()]
    located = Counter((Path(q["file"]).name, q["reason"], q["line"]) for q in records)
    for name, (_, cases, _) in JSONL_CASES.items():
        for reason, line in cases:
            assert located[(f"{name}.jsonl", reason, line)] == 1, (name, reason, line)
    for name in ("vanishes.jsonl", "replaced.jsonl", "fifo.jsonl", "dangling.jsonl"):
        assert located[(name, "unreadable_file", None)] == 1, name
    assert all(q["file"] and q["reason"] in REASONS and q["detail"] for q in records)
    r = m["records"]
    assert r["read"] == r["kept"] + r["quarantined"] and r["quarantined"] == len(records)
    kept_expected = sum(k for _, _, k in JSONL_CASES.values()) + 20 + sum(r is None for _, r in PARQUET_ROWS)
    kept_expected += sum(r is None for _, r in TEXT_CASES.values())
    assert r["kept"] == m["documents"] == kept_expected


def test_score_dedup_decide_reconcile_every_record_end_to_end(curated):
    root, m, score, dedup, decide = curated
    run = root / "run"
    assert score["rows_in"] == m["documents"] == score["rows_scored"] + score["rows_quarantined"]
    assert dedup.docs == m["documents"]
    assert decide["reconciles"] and decide["input"] == score["rows_scored"]
    assert decide["input"] == decide["kept"] + decide["dropped"] + decide["quarantined"]
    summary = json.loads((run / "curated/summary.json").read_text())
    assert summary["upstream"]["reconciles"]
    curated_rows = sum(pq.read_metadata(p).num_rows for p in (run / "curated").glob("shard-*.parquet"))
    assert curated_rows == decide["kept"] == decide["kept_written"]
    read = m["records"]["read"]
    accounted = decide["kept"] + decide["dropped"] + decide["quarantined"]
    accounted += score["rows_quarantined"] + m["records"]["quarantined"]
    assert read == accounted, "an input record was lost or counted twice between ingestion and curation"
    table = pq.read_table(run / "signals/shard-00000.parquet", columns=["id"])
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert not list(run.rglob(".tmp-*")), "a temp file was left behind"


def test_stages_quarantine_bad_corpus_shards_or_fail_with_one_clear_error(tmp_path):
    from curation.decide.decisions import DecideConfig, run_decide
    from curation.signals.dedup import run_dedup
    from curation.signals.score import ScoreConfig, score_run

    run = tmp_path / "run"
    (run / "corpus").mkdir(parents=True)
    docs = [{"id": f"g{i}", "text": t, "source": "s", "lang": "en", "domain": "code", "unit_id": None}
            for i, t in enumerate(stdlib_texts(6, max_chars=800))]  # fmt: skip
    bad_rows = [
        {**docs[0], "id": "n1", "text": None},  # missing_text
        {**docs[0], "id": "", "text": "no id"},  # missing_id
        {**docs[0], "id": "dup", "text": "first"},
        {**docs[0], "id": "dup", "text": "second"},  # duplicate_id
        {**docs[0], "id": "crlf", "text": "a\r\nb\nc\r\n"},  # scored
    ]
    pq.write_table(pa.Table.from_pylist(docs, schema=CORPUS_SCHEMA), run / "corpus/shard-00000.parquet")
    pq.write_table(pa.Table.from_pylist(bad_rows), run / "corpus/shard-00001.parquet")  # nulls: no schema
    whole = (run / "corpus/shard-00000.parquet").read_bytes()
    (run / "corpus/shard-00002.parquet").write_bytes(whole[: len(whole) // 2])  # a truncated shard
    totals = score_run(ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1,
                                   heuristics=False), str(run))  # fmt: skip
    quarantined = [json.loads(x) for f in (run / "signals/quarantine").glob("*.jsonl") for x in f.open()]
    assert Counter(q["reason"] for q in quarantined) == Counter(
        missing_text=1, missing_id=1, duplicate_id=1, unreadable_shard=1
    )
    assert totals["rows_in"] == totals["rows_scored"] + totals["rows_quarantined"]
    assert totals["shards_quarantined"] == 1
    with pytest.raises(Exception, match="shard-00002.parquet") as e:
        run_dedup(str(run))
    assert "Traceback" not in str(e.value)
    (run / "corpus/shard-00002.parquet").unlink()
    assert run_dedup(str(run)).docs == len(docs) + len(bad_rows)  # a null text hashes as empty, no crash
    decide = run_decide(str(run), DecideConfig())
    assert decide["input"] == decide["kept"] + decide["dropped"] + decide["quarantined"] == totals["rows_scored"]
