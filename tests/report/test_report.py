"""The report of a small real run: valid self-contained HTML, every section, numbers equal to the run's JSON, a real
browser renders it without console errors, a diff against a previous run, and missing parts reported, not crashed."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _paths import ARTIFACTS
from browser_util import inspect_page, require_browser
from tiny_run import run_stages, tiny_config

from report.build import build_report
from tokenwise.stages import REGISTRY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    cfg = tiny_config(tmp)
    run_stages(cfg, tmp / "run")
    build_report(str(tmp / "run"))
    return tmp / "run"


class _Checker(HTMLParser):
    """Collects tags, ids and external references; raises on unbalanced sections."""

    VOID = {"meta", "br", "img", "link", "line", "rect", "circle", "polyline", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http://", "https://", "//")):
                self.external.append(a[k])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()


def test_html_is_valid_self_contained_and_has_every_section(run):
    html = (run / "report" / "index.html").read_text()
    c = _Checker()
    c.feed(html)
    assert c.stack == [] and c.external == [] and "<script" not in html
    data = json.loads((run / "report" / "report.json").read_text())
    from report.sections import SECTIONS

    assert [s.id for s in SECTIONS] == list(data["sections"])
    for sid in data["sections"]:
        assert sid in c.ids
    avail = {k for k, v in data["sections"].items() if v["unavailable"] is None}
    assert {"overview", "languages", "tokens", "tpsu", "plans", "economics", "filters", "waterfall", "histograms",
            "duplicates"} <= avail  # fmt: skip
    assert "no previous run given" in data["sections"]["diff"]["unavailable"]
    for sec in data["sections"].values():
        for cid, chart in sec["charts"].items():
            assert (run / "report" / "csv" / f"{cid}.csv").exists() and len(chart["rows"]) > 1


def test_numbers_match_the_run(run):
    data = json.loads((run / "report" / "report.json").read_text())["sections"]
    manifest = json.loads((run / "corpus" / "manifest.json").read_text())
    n_docs = sum(pq.read_metadata(p).num_rows for p in (run / "corpus").glob("shard-*.parquet"))
    assert data["overview"]["data"]["documents"] == n_docs == manifest["documents"]
    assert data["overview"]["data"]["bytes"] == manifest["bytes"]
    summ = json.loads((run / "curated" / "summary.json").read_text())
    f = data["filters"]["data"]
    assert (f["input"], f["kept"], f["dropped"], f["quarantined"]) == (
        summ["input"], summ["kept"], summ["dropped"], summ["quarantined"])  # fmt: skip
    waterfall = data["waterfall"]["charts"]["waterfall_docs"]["rows"]
    assert waterfall[1] == ["input", summ["input"]] and waterfall[-1] == ["kept", summ["kept"]]
    tpsu = json.loads((run / "curated" / "tpsu.json").read_text())
    assert data["tpsu"]["data"]["premium_matrix"] == tpsu["premium_matrix"]
    hi = tpsu["premium_matrix"]["cl100k_base"]["hi"]
    row = next(r for r in data["tpsu"]["charts"]["tpsu_premium"]["rows"] if r[0] == "hi")
    assert row[1] == hi > 1.5  # Hindi costs well above English under cl100k
    counts = json.loads((run / "tokens" / "curated" / "counts.json").read_text())
    assert data["tokens"]["data"]["totals"] == counts["totals"] and counts["docs"] == summ["kept"]
    bpt = data["tokens"]["data"]["bytes_per_token"]["tiktoken:cl100k_base"]
    en, hi_counts = counts["by_lang"]["en"], counts["by_lang"]["hi"]
    assert bpt["hi"] == round(hi_counts["bytes"] / hi_counts["tiktoken:cl100k_base"], 3) < bpt["en"]
    assert bpt["en"] == round(en["bytes"] / en["tiktoken:cl100k_base"], 3)


def test_browser_renders_without_console_errors(run):
    require_browser()
    shot = ARTIFACTS / "report.png"
    res = inspect_page((run / "report" / "index.html").as_uri(), shot)
    assert res["errors"] == []
    assert len(res["charts"]) >= 10 and all(w > 100 and h > 50 for w, h in res["charts"].values())
    assert "overview" in res["sections"] and shot.stat().st_size > 20_000


def test_diff_against_previous_run(run, tmp_path):
    prev = tmp_path / "prev"
    shutil.copytree(run, prev)
    shard = sorted((prev / "corpus").glob("shard-*.parquet"))[0]
    t = pq.read_table(shard)
    pq.write_table(t.slice(0, t.num_rows - 7), shard)  # the previous run had 7 fewer documents
    res = build_report(str(run), previous=str(prev))
    data = json.loads(Path(res["json"]).read_text())["sections"]["diff"]
    assert (
        data["unavailable"] is None and data["data"]["new_documents"] == 7 and data["data"]["removed_documents"] == 0
    )
    assert "7 new" in (run / "report" / "summary.md").read_text()
    build_report(str(run))  # leave the module's report without a diff


def test_diff_against_a_snapshot_taken_before_an_in_place_refresh(run, tmp_path):
    from report.build import snapshot_for_diff

    snap = snapshot_for_diff(str(run), str(tmp_path / "snap"))
    assert "text" not in pq.read_schema(tmp_path / "snap/corpus/shard-00000.parquet").names
    res = build_report(str(run), previous=snap)
    data = json.loads(Path(res["json"]).read_text())["sections"]["diff"]["data"]
    assert data["new_documents"] == 0 and data["removed_documents"] == 0
    assert all(abs(v) < 1e-9 for v in data["language_share_delta_pp"].values())
    build_report(str(run))


def test_missing_parts_are_reported_not_crashed(run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run / "corpus", partial / "corpus")
    (partial / "curated").mkdir()
    (partial / "curated" / "summary.json").write_text("{not json")
    res = build_report(str(partial), commands=REGISTRY.writer_commands())
    data = json.loads(Path(res["json"]).read_text())["sections"]
    assert data["overview"]["unavailable"] is None
    assert "tokenwise curate dedup" in data["duplicates"]["unavailable"]
    assert re.search(r"could not be built: JSONDecodeError", data["filters"]["unavailable"])
    assert "tokenwise measure" in data["measurement"]["unavailable"]
    html = Path(res["html"]).read_text()
    assert "Unavailable:" in html
