"""Build the report of a run: ``<run>/report/index.html``, ``report.json``, ``csv/``, ``summary.md``.

Each section reads what the stages wrote; a missing part makes that section say what is unavailable and why, never
crash the report. ``report.json`` holds every plotted number; each chart's numbers are also a CSV beside the page.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import shutil
import time
import traceback
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import Field

from report.context import Context, Unavailable
from report.html import Section, page
from report.sections import SECTIONS
from report.tables import corpus_table
from tokenwise.config import BaseConfig, load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, atomic_open, safe_join, write_json

log = logging.getLogger(__name__)


class ReportConfig(BaseConfig):
    """The ``report`` section: what to diff against and how examples are drawn."""

    previous: str | None = Field(None, description="A previous run directory to diff against (none: no diff).")
    seed: int = Field(0, description="Seed for the example documents shown per outcome.")


def build_report(
    run_dir: str, previous: str | None = None, seed: int = 0, commands: dict[str, str] | None = None
) -> dict:
    """Write the report of ``run_dir`` (diffed against ``previous`` when given); returns a summary dict.

    ``commands`` maps a top-level run-dir folder to the command that writes it (``Registry.writer_commands()``), for
    the hints of unavailable sections.
    """
    ctx = Context(RunDir(run_dir), RunDir(previous) if previous else None, seed, commands or {})
    sections: list[Section] = []
    for entry in SECTIONS:
        sid, title = entry.id, entry.title
        try:
            sec = entry.build(ctx)
        except Unavailable as e:
            sec = Section(sid, title, unavailable=str(e))
        except Exception as e:  # a broken part must not take the whole report down; say what broke
            log.warning(kv(section=sid, error=repr(e)) + "\n" + traceback.format_exc(limit=3))
            sec = Section(sid, title, unavailable=f"could not be built: {type(e).__name__}: {e}")
        sec.id, sec.title = sid, title
        sections.append(sec)
    out = RunDir(run_dir).stage("report")
    html = page("tokenwise report", f"run {Path(run_dir).resolve()} · {time.strftime('%Y-%m-%d %H:%M')}", sections)
    with atomic_open(f"{out}/index.html", "w", encoding="utf-8") as f:
        f.write(html)
    for sec in sections:
        for c in sec.charts:
            buf = io.StringIO()
            csv.writer(buf).writerows(c.rows)
            with atomic_open(safe_join(out, "csv", f"{c.id}.csv"), "w", encoding="utf-8") as f:
                f.write(buf.getvalue())
    data = {
        "run": str(Path(run_dir).resolve()),
        "previous": str(Path(previous).resolve()) if previous else None,
        "sections": {
            s.id: {
                "title": s.title,
                "unavailable": s.unavailable,
                "data": s.data,
                "charts": {c.id: {"title": c.title, "rows": c.rows} for c in s.charts},
            }
            for s in sections
        },
    }
    write_json(f"{out}/report.json", data)
    summary_md = summary_markdown(sections, f"{Path(out).resolve()}/index.html")
    with atomic_open(f"{out}/summary.md", "w", encoding="utf-8") as f:
        f.write(summary_md)
    available = sum(s.unavailable is None for s in sections)
    return {
        "html": f"{out}/index.html",
        "json": f"{out}/report.json",
        "sections": len(sections),
        "available": available,
    }


def snapshot_for_diff(run_dir: str, dest: str) -> str:
    """Keep what the diff needs of a run before it is refreshed in place: an index of its corpus (id, source, lang,
    domain, n_bytes — no text) and its curated summary. ``build_report(run, previous=dest)`` diffs against it."""



    if not glob.glob(f"{run_dir}/corpus/shard-*.parquet"):
        raise FileNotFoundError(f"{run_dir}: no corpus to snapshot")
    index = corpus_table(run_dir).select(["id", "source", "lang", "domain", "n_bytes"])
    with atomic_open(f"{dest}/corpus/shard-00000.parquet", "wb") as f:
        pq.write_table(index, f)
    for rel in ("corpus/manifest.json", "curated/summary.json"):
        if Path(run_dir, rel).exists():
            Path(dest, rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(run_dir, rel), Path(dest, rel))
    return dest


def summary_markdown(sections: list[Section], link: str) -> str:
    """The short version published as a Prefect markdown artifact, linking to the full file."""
    lines = ["# tokenwise report", "", f"Full report: [{link}](file://{link})", ""]
    for s in sections:
        if s.unavailable:
            lines.append(f"- **{s.title}**: unavailable ({s.unavailable})")
        elif s.data.get("headline"):
            lines.append(f"- **{s.title}**: {s.data['headline']}")
    return "\n".join(lines) + "\n"


def report_from_config(config_path: str, run_dir: str, commands: dict[str, str] | None = None) -> str:
    """The report stage: write the report of the run (diffed against ``report.previous`` from config when set)."""
    cfg = load_section(config_path, "report", ReportConfig)
    res = build_report(run_dir, previous=cfg.previous, seed=cfg.seed, commands=commands)
    return f"report with {res['available']}/{res['sections']} sections at {res['html']}"
