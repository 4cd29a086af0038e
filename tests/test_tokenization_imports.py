"""The modules of molformer_kd/tokenization import each other without cycles, and the package's names stay put."""

import ast
from pathlib import Path

import molformer_kd.tokenization

PACKAGE = "molformer_kd.tokenization"
PACKAGE_DIR = Path(molformer_kd.tokenization.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__")


def imported_siblings(module: str) -> set[str]:
    """Sibling modules a tokenization module imports anywhere (at module level or inside functions: a lazy import
    that closes a loop is still a cycle)."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    siblings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                names = [node.module] if node.module else [alias.name for alias in node.names]
            elif node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
                names = [node.module[len(PACKAGE) + 1 :]]
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [alias.name[len(PACKAGE) + 1 :] for alias in node.names if alias.name.startswith(PACKAGE + ".")]
        else:
            continue
        siblings.update(name.split(".")[0] for name in names)
    return siblings & set(MODULES)


def test_tokenization_modules_import_each_other_without_cycles():
    graph = {module: imported_siblings(module) for module in MODULES}
    assert graph["featurization"] and graph["collators"] and graph["tokenization_st_base"]  # the walk finds imports
    finished, in_progress = set(), []

    def visit(module):
        if module in in_progress:
            cycle = in_progress[in_progress.index(module) :] + [module]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in finished:
            return
        in_progress.append(module)
        for sibling in sorted(graph[module]):
            visit(sibling)
        in_progress.pop()
        finished.add(module)

    for module in MODULES:
        visit(module)


def test_public_names_stay_importable_from_the_package():
    for name in molformer_kd.tokenization.__all__:
        assert getattr(molformer_kd.tokenization, name) is not None, name
    for name in (
        "GraphCollator",
        "PairedCollator",
        "MoleculeFeaturizer",
        "SmilesTokenizer",
        "StBaseTokenizer",
        "load_processor",
        "parse_smiles",
        "register_tokenizers",
        "register_featurizer",
        "smiles_to_mol",
    ):
        assert name in molformer_kd.tokenization.__all__
