"""Layering (docs/architecture.md): every module imports only its own package or lower layers, and
models, learners and planners import each other's interfaces only, never each other's code.

The import checks run in fresh interpreters, so no module imported by another test can hide a cycle;
the layer check reads every module's import statements (type-only imports under TYPE_CHECKING aside).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mjxmbrl"
# Bottom to top; a module may import from its own group and from groups of a lower rank.
LAYERS = {
    "types": 0, "registry": 0, "ops": 0,
    "nn": 1, "envs": 1, "replay": 1,
    "models": 2, "learners": 2, "planners": 2,
    "agents": 3,
    "config": 4, "rollout": 4,
    "train": 5,
    "run": 6,
    "cli": 7, "experiments": 7,
}
METHOD_PACKAGES = {"models", "learners", "planners"}  # same rank, never each other

# importing the key package must load no module of these packages (DESIGN.md, Layers and registries)
FORBIDDEN = {
    "mjxmbrl.models": ("mjxmbrl.learners",),
    "mjxmbrl.learners": ("mjxmbrl.models",),
    "mjxmbrl.nn": ("mjxmbrl.models", "mjxmbrl.learners"),
    "mjxmbrl.ops": ("mjxmbrl.models", "mjxmbrl.learners", "mjxmbrl.nn"),
    "mjxmbrl.planners": ("mjxmbrl.models", "mjxmbrl.learners", "mjxmbrl.agents"),
    "mjxmbrl.run.loop": ("mjxmbrl.cli",),  # the run loop is below the command line
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_from_the_forbidden_layers(package):
    forbidden = FORBIDDEN[package]
    code = (
        f"import sys, {package}\n"
        f"forbidden = {forbidden!r}\n"
        "print(' '.join(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {package} loaded {result.stdout.strip()}"


def _group(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def _runtime_imports(path: Path):
    """mjxmbrl modules imported by `path`, except those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for b in node.body for n in ast.walk(b))
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "mjxmbrl" else [f"mjxmbrl.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        yield from (n for n in names if n.startswith("mjxmbrl."))


def test_every_module_imports_only_its_layer_and_below():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        me = _group(".".join(rel.parts))
        if me not in LAYERS:
            continue  # mjxmbrl/__init__.py
        for target in _runtime_imports(path):
            other = _group(target)
            if other == me:
                continue
            if LAYERS[other] > LAYERS[me] or (other in METHOD_PACKAGES and me in METHOD_PACKAGES):
                bad.append(f"{'/'.join(rel.parts)} imports {target}")
    assert not bad, "\n".join(bad)
