"""Scheduled corpus refresh: incremental (per-item shards, rescoring only new shards) vs a full rebuild + rescore.

A real slice of this machine's text is copied to a temp dir (gettext catalogs, stdlib modules); both layouts build and
score it once, then one module is edited and one catalog deleted, and each refreshes (corpus build + curate score).
Reports wall and CPU seconds (this process + children) and documents read/scored per refresh.

    .venv/bin/python bench/refresh.py [--small]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.ingest.build import CorpusConfig, build  # noqa: E402
from curation.signals.score import ScoreConfig, score_run  # noqa: E402

OUT = Path(__file__).parent / "results" / "refresh.json"
LOCALE = Path("/usr/share/locale")


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def copy_sources(dest: Path, domains: int, langs: list[str], modules: int) -> Path:
    """Copy the first `domains` catalog domains present in every language and `modules` stdlib modules."""
    have = [{p.stem for p in (LOCALE / lang / "LC_MESSAGES").glob("*.mo")} for lang in langs]
    common = sorted(set.intersection(*have) - {d for d in set.union(*have) if d.startswith(("iso_", "xkeyboard"))})
    for dom in common[:domains]:
        for lang in langs:
            p = dest / "locale" / lang / "LC_MESSAGES" / f"{dom}.mo"
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(LOCALE / lang / "LC_MESSAGES" / f"{dom}.mo", p)
    root = Path(sysconfig.get_paths()["stdlib"])
    (dest / "stdlib").mkdir(parents=True)
    for f in sorted(p for p in root.glob("*.py") if p.stat().st_size < 150_000)[:modules]:
        shutil.copyfile(f, dest / "stdlib" / f.name)
    return dest


def config(src: Path, incremental: bool) -> CorpusConfig:
    return CorpusConfig.model_validate({
        "sources": [{"type": "gettext", "root": str(src / "locale"), "min_words": 2},
                    {"type": "stdlib", "root": str(src / "stdlib"), "max_modules": None}],
        "incremental": incremental, "tasks": 1, "workers": 1,
    })  # fmt: skip


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def refresh(src: Path, run: Path, incremental: bool, score: ScoreConfig) -> dict:
    t0, c0 = time.perf_counter(), cpu_seconds()
    m = build(config(src, incremental), str(run))
    t1 = time.perf_counter()
    score_run(score, str(run))
    t2, c2 = time.perf_counter(), cpu_seconds()
    sig = json.loads((run / "signals" / "manifest.json").read_text())
    return {
        "documents": m["documents"],
        "shards": len(m["shards"]),
        "records_read": m["refresh"]["records_read"] if "refresh" in m else m["records"]["read"],
        "docs_scored": sig["this_run"]["rows_scored"],
        "build_wall_s": round(t1 - t0, 2),
        "score_wall_s": round(t2 - t1, 2),
        "wall_s": round(t2 - t0, 2),
        "cpu_s": round(c2 - c0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="8 domains x 3 languages, 60 modules (about a minute)")
    a = ap.parse_args()
    domains, langs, modules = (8, ["de", "fr", "ja"], 60) if a.small else (30, ["de", "fr", "ja", "hi", "ru"], 200)
    score = ScoreConfig(tokenizers=["tiktoken:cl100k_base"], run_tokenizers=False, tasks=1, workers=1)
    with tempfile.TemporaryDirectory() as tmp:
        src = copy_sources(Path(tmp) / "src", domains, langs, modules)
        first = {k: refresh(src, Path(tmp) / k, k == "incremental", score) for k in ("incremental", "full")}
        module = sorted((src / "stdlib").glob("*.py"))[len(modules_of(src)) // 2]
        module.write_text(module.read_text(encoding="utf-8") + "\n# edited by bench/refresh.py\n", encoding="utf-8")
        gone = sorted((src / "locale" / langs[0] / "LC_MESSAGES").glob("*.mo"))[0]
        gone.unlink()
        again = {k: refresh(src, Path(tmp) / k, k == "incremental", score) for k in ("incremental", "full")}
    assert again["incremental"]["documents"] == again["full"]["documents"], "both layouts hold the same corpus"
    res = {
        "machine": machine(),
        "size": {"domains": domains, "languages": langs, "modules": modules, "small": a.small},
        "change": {"edited_module": module.name, "deleted_catalog": f"{langs[0]}/{gone.name}"},
        "first_build": first,
        "refresh": again,
        "ratio_full_over_incremental": {
            "wall": round(again["full"]["wall_s"] / again["incremental"]["wall_s"], 2),
            "cpu": round(again["full"]["cpu_s"] / again["incremental"]["cpu_s"], 2),
            "docs_scored": round(again["full"]["docs_scored"] / max(1, again["incremental"]["docs_scored"]), 1),
        },
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    for k in ("incremental", "full"):
        r = again[k]
        print(f"refresh {k:11s}: {r['wall_s']:6.1f}s wall {r['cpu_s']:6.1f}s cpu, read {r['records_read']} records, "
              f"scored {r['docs_scored']} of {r['documents']} docs, {r['shards']} shards")  # fmt: skip
    print(f"full / incremental: {res['ratio_full_over_incremental']} -> {OUT}")


def modules_of(src: Path) -> list[Path]:
    return sorted((src / "stdlib").glob("*.py"))


if __name__ == "__main__":
    main()
