"""Atomic writes and completion markers of the run directory."""

import pytest

from tokenwise.rundir import RunDir, atomic_open, read_json, write_json


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out" / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_write_json_and_markers(tmp_path):
    run = RunDir(tmp_path / "run")
    write_json(run.stage("corpus", "manifest.json"), {"documents": 3})
    assert read_json(run.path("corpus", "manifest.json")) == {"documents": 3}
    assert not run.is_done("corpus", "h1")
    run.mark_done("corpus", "h1", {"documents": 3})
    assert run.is_done("corpus", "h1") and not run.is_done("corpus", "h2")
