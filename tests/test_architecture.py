"""The package's shape is a contract (issue 20): layers, independent domain packages, no import cycles.

`.importlinter` lists the layers, highest first; a module imports only from its own layer or below, and the
packages of a layer split by `|` never import each other. Lazy imports inside functions count: they run too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_CODE = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root`, against that tree's own `.importlinter` (no cache written)."""
    return subprocess.run(
        [sys.executable, "-c", LINT_CODE, "--no-cache", "--no-logo", str(root / ".importlinter")],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    """The package and its contracts, copied so that a test can add a wrong import to it."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "modelforge", root / "modelforge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


@pytest.mark.parametrize(
    ("module", "wrong_import", "broken"),
    [
        # a lower layer reaching up: the model layer must not know the command line
        (
            "modelforge/model/_wrong.py",
            "from modelforge.cli import app",
            "modelforge.model is not allowed to import modelforge.cli",
        ),
        # even lazily, inside a function
        (
            "modelforge/runtimes/_wrong.py",
            "def f():\n    import modelforge.run.cache",
            "modelforge.runtimes is not allowed to import modelforge.run",
        ),
        # two independent domain packages of one layer
        (
            "modelforge/pruning/_wrong.py",
            "import modelforge.quantization.qdq",
            "modelforge.pruning is not allowed to import modelforge.quantization",
        ),
    ],
)
def test_a_wrong_import_breaks_the_contracts(package_copy, module, wrong_import, broken):
    wrong = package_copy / module
    wrong.write_text(f'"""A deliberately wrong import."""\n\n{wrong_import}\n')
    try:
        result = lint_imports(package_copy)
    finally:
        wrong.unlink()
    assert result.returncode == 1, result.stdout[-2000:]
    assert broken in result.stdout


def import_cycles(package: str) -> list[list[str]]:
    """Strongly connected components (more than one module) of the package's import graph, lazy imports included."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None, exclude_type_checking_imports=True)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm; the graph is small, recursion is fine
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return cycles


def cycles_in(root: Path) -> list[list[str]]:
    """import_cycles("modelforge") for the package under `root`, in a fresh interpreter."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from test_architecture import import_cycles; "
        "print(json.dumps(import_cycles('modelforge')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_no_import_cycle_anywhere_in_the_package():
    assert cycles_in(ROOT) == []


def test_the_cycle_check_finds_a_cycle(package_copy):
    """The check itself works: two modules that import each other (one lazily) are reported."""
    ping, pong = package_copy / "modelforge" / "_ping.py", package_copy / "modelforge" / "_pong.py"
    ping.write_text("import modelforge._pong\n")
    pong.write_text("def f():\n    import modelforge._ping\n")
    try:
        assert ["modelforge._ping", "modelforge._pong"] in cycles_in(package_copy)
    finally:
        ping.unlink()
        pong.unlink()
