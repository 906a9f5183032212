"""The fastText quality classifier trains on real text from this machine and separates its two sets.

Positive: Python stdlib docstrings (reviewed explanatory prose). Negative: license/copyright boilerplate and the dpkg
status database (machine-generated records). Held-out precision/recall come from metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.quality.classifier import QualityConfig, QualityScorer, collect, normalize
from tokenwise.splits import is_heldout

CONFIG = """
quality:
  positive:
    - {glob: "/usr/lib/python3.11/[a-m]*.py", extract: docstrings}
  negative:
    - {glob: "/usr/share/common-licenses/*", extract: paragraphs}
    - {glob: "/usr/share/doc/[a-l]*/copyright", extract: paragraphs}
    - {glob: /var/lib/dpkg/status, extract: paragraphs}
  max_docs_per_set: 400
  heldout_fraction: 0.25
  epoch: 10
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    from curation.quality.classifier import train_from_config

    root = tmp_path_factory.mktemp("quality")
    cfg = root / "cfg.yaml"
    cfg.write_text(CONFIG)
    run = str(root / "run")
    summary = train_from_config(str(cfg), run)
    return cfg, run, summary


def test_trains_and_reports_heldout_precision_recall(trained):
    _, run, summary = trained
    out = Path(run) / "models" / "quality"
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "model.bin").is_file()
    held = metrics["heldout"]
    assert metrics["n_heldout"]["positive"] >= 30 and metrics["n_heldout"]["negative"] >= 30
    assert held["precision"] >= 0.9 and held["recall"] >= 0.9, held
    assert "precision" in summary


def test_scores_separate_heldout_sets(trained):
    from tokenwise.config import load_section

    cfg_path, run, _ = trained
    cfg = load_section(cfg_path, "quality", QualityConfig)
    scorer = QualityScorer(Path(run) / "models" / "quality" / "model.bin")
    pos = [t for i, t in collect(cfg.positive, cfg) if is_heldout(i, fraction=cfg.heldout_fraction)]
    neg = [t for i, t in collect(cfg.negative, cfg) if is_heldout(i, fraction=cfg.heldout_fraction)]
    mean_pos = sum(scorer.score(pos)) / len(pos)
    mean_neg = sum(scorer.score(neg)) / len(neg)
    assert mean_pos > 0.8 and mean_neg < 0.2, (mean_pos, mean_neg)


def test_rerun_skips_when_inputs_unchanged(trained):
    from curation.quality.classifier import train_from_config

    cfg, run, _ = trained
    before = (Path(run) / "models" / "quality" / "model.bin").stat().st_mtime_ns
    assert "up to date" in train_from_config(str(cfg), run)
    assert (Path(run) / "models" / "quality" / "model.bin").stat().st_mtime_ns == before


def test_empty_set_is_a_clear_error(tmp_path):
    from curation.quality.classifier import train_from_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.replace("/usr/lib/python3.11/[a-m]*.py", str(tmp_path / "nothing-*.py")))
    with pytest.raises(ValueError, match="too few documents"):
        train_from_config(str(cfg), str(tmp_path / "run"))


def test_normalize_is_one_lowercase_line():
    assert normalize("Hello\n\n  World\tAgain") == "hello world again"
