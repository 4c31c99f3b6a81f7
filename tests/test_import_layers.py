"""The layout's import rule, checked on the source (``ast``, nothing is imported).

Stages, left to right (README, Layout): dft -> data -> models -> training -> evaluation ->
methods -> report -> harness -> experiments -> cli.  A module imports only from its own stage
or one to its left, at module level or inside a function; the shared helpers (``errors``,
``runtime``, ``progress``, ``ledger`` and the package root) are importable from anywhere and
import no stage.
PySCF is imported only in ``qptbench/dft/`` and by the labelling (``data/labelling.py``); pandas,
tabulate and matplotlib only in ``qptbench/report/``.  And the module-level imports form no
circle, counting that importing ``a.b.c`` first runs the packages ``a`` and ``a.b``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"qptbench": ROOT / "qptbench", "qptbench.baselines": ROOT / "baselines"}

STAGES = ("dft", "data", "models", "training", "evaluation", "methods", "report", "harness",
          "experiments", "cli")
SHARED = {"qptbench", "qptbench.errors", "qptbench.runtime", "qptbench.progress",
          "qptbench.ledger"}
# baselines/ installs as qptbench.baselines: the model is a model, its data, loss and run options
# are training specifics (it scores nothing, so nothing there is evaluation).
BASELINES = {"qptbench.baselines": "models", "qptbench.baselines.qhnet": "models",
             "qptbench.baselines.qhnet_layers": "models",
             "qptbench.baselines.qhnet_expansion": "models",
             "qptbench.baselines.qhnet_orbitals": "models",
             "qptbench.baselines.qhnet_init": "models",
             "qptbench.baselines.qhnet_data": "training",
             "qptbench.baselines.qhnet_train": "training",
             "qptbench.baselines.qhnet_run": "training"}
PYSCF_ALLOWED = ("qptbench.dft", "qptbench.data.labelling")
REPORT_ONLY = {"pandas", "tabulate", "matplotlib"}
# Imports that break the rule on purpose, each with its reason: (importer, imported): reason.
# Empty: there is none.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()


def stage(module: str) -> str | None:
    """The stage of a qptbench module; None for the shared helpers."""
    if module in SHARED:
        return None
    if module in BASELINES:
        return BASELINES[module]
    name = module.split(".")[1]
    if name == "__main__":
        return "cli"
    if name not in STAGES:
        raise AssertionError(f"{module}: no stage; add it to STAGES, SHARED or BASELINES")
    return name


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported name, line, at module level) for every import in the module; names resolved
    to the module they load (``from a import b`` is ``a.b`` when that is a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, child.lineno, top))
            visit(child, inner)

    visit(tree, True)
    return found


def own(name: str) -> str | None:
    """The qptbench module an import loads, or None for other packages."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_stage():
    for module in MODULES:
        stage(module)


def test_no_stage_imports_from_one_to_its_right():
    wrong = []
    for module in MODULES:
        mine = stage(module)
        for name, line, _ in imports(module):
            target = own(name)
            if target is None or (module, target) in EXCEPTIONS:
                continue
            theirs = stage(target)
            if mine is None and theirs is not None:
                wrong.append(f"{module}:{line}: shared helper imports {target} ({theirs})")
            elif mine is not None and theirs is not None and \
                    STAGES.index(theirs) > STAGES.index(mine):
                wrong.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def test_pyscf_and_the_report_libraries_stay_in_their_stages():
    wrong = []
    for module in MODULES:
        for name, line, _ in imports(module):
            top = name.split(".")[0]
            if top == "pyscf" and not module.startswith(PYSCF_ALLOWED):
                wrong.append(f"{module}:{line} imports {name} (PySCF: dft/ and labelling)")
            if top in REPORT_ONLY and stage(module) != "report":
                wrong.append(f"{module}:{line} imports {name} (only qptbench/report/)")
    assert not wrong, "\n".join(wrong)


def test_module_level_imports_have_no_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for name, _, top in imports(module):
            target = own(name)
            if top and target is not None:
                graph[module].add(target)
        for target in [*graph[module], module]:  # a module's packages run first
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in MODULES and parent != module:
                    graph[module].add(parent)
    cycles, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{module}: {lines} lines; split it by job"


def test_the_rule_sees_what_it_checks():
    """The checks above would see a violation: the parser finds function-level imports and
    resolves relative ones (a rule that sees nothing passes vacuously)."""
    found = {(own(name), top) for name, _, top in imports("qptbench.methods")}
    assert ("qptbench.methods.qpt", False) in found  # a lazy import inside a method
    assert ("qptbench.evaluation.evaluator", True) in found
    assert (own("qptbench.baselines.qhnet"), True) in {
        (own(n), t) for n, _, t in imports("qptbench.baselines.qhnet_run")}
    assert STAGES.index(stage("qptbench.harness")) > STAGES.index(stage("qptbench.report.tables"))
