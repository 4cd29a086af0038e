"""The package's shape (DESIGN.md "Layers"): data flows one way, no module imports a module of a later layer, no
import cycles anywhere, and nothing edits sys.path to find the project's own code."""

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "molformer_kd"
# DESIGN.md's layers, in data-flow order; the top layer's modules may import every layer above them.
LAYERS = ("data", "tokenization", "modeling", "distillation", "top")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS[:-1] else "top"


def imported_modules(module: str) -> set[str]:
    """Package modules `module` imports anywhere in its file (inside functions too: a lazy import still couples)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != module)
    return found


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_the_import_walk_sees_imports():
    assert "molformer_kd.modeling.heads" in GRAPH["molformer_kd.modeling.modeling_gin"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_later_layer(module):
    own = LAYERS.index(layer(module))
    later = sorted(m for m in GRAPH[module] if LAYERS.index(layer(m)) > own)
    assert later == [], f"{module} ({layer(module)}) imports later layers: {later}"


def test_no_import_cycles():
    """Module-level and lazy imports between modules, leaving out a package's own submodules (`__init__` imports)."""

    def edges(module):
        return [m for m in GRAPH[module] if not m.startswith(module + ".") and not module.startswith(m + ".")]

    finished, in_progress = set(), []

    def visit(module):
        if module in in_progress:
            cycle = in_progress[in_progress.index(module) :] + [module]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in finished:
            return
        in_progress.append(module)
        for other in sorted(edges(module)):
            visit(other)
        in_progress.pop()
        finished.add(module)

    for module in sorted(MODULES):
        visit(module)


def test_no_sys_path_edits():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    edits = ("sys.path.insert", "sys.path.append")
    editing = [
        name
        for name in tracked.stdout.split()
        if name != "tests/test_package_structure.py" and any(edit in (REPO / name).read_text() for edit in edits)
    ]
    assert editing == []
