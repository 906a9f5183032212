"""README "Measured" figures against their benchmark JSON (bench/readme.py, what `make bench-readme` prints): every
claim's README snippet is in the shipped README and its number equals the committed JSON value written the README's
way; and the checker itself catches a changed figure, a missing snippet and a rerun outside its noise band."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from _paths import REPO


def _readme_bench():
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_readme", REPO / "bench" / "readme.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_readme"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def br():
    return _readme_bench()


def test_every_readme_figure_matches_its_committed_json(br):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    problems = []
    for cl in br.CLAIMS:
        if cl.text not in readme or cl.value not in cl.text:
            problems.append(f"README lacks {cl.text!r} (value {cl.value})")
            continue
        if not (br.RESULTS / cl.json).is_file():
            continue  # a slow bench not run yet (bench/readme.py lists it); its figure is labelled in the README
        got, why = br.read(cl)
        if got != cl.value:
            problems.append(f"{cl.text!r}: README {cl.value}, {cl.json}:{cl.key} gives {got} {why}")
    assert not problems, "\n".join(problems)


def test_claims_name_a_bench_command_and_json(br):
    for cl in br.CLAIMS:
        script = cl.command.split()[0]
        assert (REPO / script).is_file() and script.startswith("bench/"), cl
        assert cl.json.endswith(".json") and (cl.slow or cl.needs or (br.RESULTS / cl.json).is_file()), cl


def test_checker_flags_changed_figures_missing_snippets_and_noisy_reruns(br, tmp_path, monkeypatch):
    monkeypatch.setattr(br, "RESULTS", tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"a": {"b": [0.5, 2.0]}, "share": 0.3151, "esc": 0.5375,
                                                 "m": {"p": {"v": 1.5}, "q": {"v": 3.1}, "r": {}}}))  # fmt: skip
    claims = [
        br.Claim("ratio 4.0×", "4.0", "x.json", "a.b.1 / a.b.0", "bench/serve.py"),
        br.Claim("saves 31.5%", "31.5", "x.json", "share", "bench/serve.py", scale=100),
        br.Claim("46% small", "46", "x.json", "esc", "bench/serve.py", scale=-100, offset=100),
        br.Claim("worst 3.1", "3.1", "x.json", "max:m.*.v", "bench/serve.py"),
        br.Claim("gone 7", "7", "x.json", "share", "bench/serve.py"),
    ]
    rows, bad = br.check("ratio 4.0× saves 31.6% 46% small worst 3.1", claims, {})
    status = {r[0]: r[-1] for r in rows}
    assert bad == 3  # 31.5 != 31.6 (README text says 31.6), snippet "saves 31.5%" and "gone 7" missing / wrong
    assert status["ratio 4.0×"] == "" and status["46% small"] == "" and status["worst 3.1"] == ""
    assert "README snippet missing" in status["gone 7"] and "README != committed JSON" in status["gone 7"]
    # a rerun that moved: inside the claim's band "reproduces", outside it is flagged
    before = {c: br.read(c)[0] for c in claims}
    (tmp_path / "x.json").write_text(json.dumps({"a": {"b": [0.5, 2.2]}, "share": 0.20, "esc": 0.5375,
                                                 "m": {"p": {"v": 1.5}, "q": {"v": 3.1}}}))  # fmt: skip
    rows, _ = br.check("ratio 4.0× saves 31.5% 46% small worst 3.1", claims[:2], before)
    assert rows[0][3] == "4.4" and "reproduces" in rows[0][-1]
    assert rows[1][3] == "20.0" and "outside ±15%" in rows[1][-1]
