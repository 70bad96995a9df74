"""The layers of design.md hold: each module imports only its own layer or those below (also inside functions), and nothing imports devtools."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dms_pipelines"
LAYERS = {  # bottom first
    "kernels": 0,
    "config": 1,
    "paths": 1,
    "operations": 2,
    "stock": 3,
    "formats": 3,
    "sources": 3,
    "customers": 3,
    "images": 3,
    "marketplaces": 4,
    "delivery": 4,
    "warehouse": 4,
    "leads": 4,
    "identity": 4,
    "pipeline": 5,
    "orchestration": 6,
    "definitions": 6,
    "cli": 7,
    "devtools": 8,
}


def layer_of(module: str) -> str:
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    """Every dms_pipelines module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dms_pipelines.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dms_pipelines"):
            found |= {f"{node.module}.{alias.name}" if node.module == "dms_pipelines" else node.module for alias in node.names}
    return found


def modules() -> dict[str, Path]:
    """Every module of the package by name (the package's own __init__ aside: it imports nothing)."""
    named = {".".join(("dms_pipelines", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path for path in PACKAGE.rglob("*.py")}
    assert imports(named.pop("dms_pipelines")) == set()
    return named


def test_every_module_has_a_layer():
    assert {layer_of(name) for name in modules()} <= set(LAYERS)


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(f"{name} imports {target}" for name, path in modules().items() for target in imports(path) if LAYERS[layer_of(target)] > LAYERS[layer_of(name)])
    assert upward == []


def test_nothing_outside_devtools_imports_it():
    assert sorted(f"{name} imports {target}" for name, path in modules().items() if layer_of(name) != "devtools" for target in imports(path) if layer_of(target) == "devtools") == []
