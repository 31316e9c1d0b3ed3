"""The package's dependencies point one way (../shared/DESIGN.md): envs <- data <- nn <- agents / labelling <-
trainers <- pipelines <- runs, so each layer can be read, tested and reused without the ones above it. Checked on every
import statement, those inside functions included (a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {  # package (or top-level module) of embodied_rl -> its layer; an import must go to a lower layer
    **dict.fromkeys(("envs", "validation", "devices", "threads", "files", "memory"), 0),
    **dict.fromkeys(("data", "logging", "cli"), 1),
    "nn": 2,
    **dict.fromkeys(("agents", "labelling", "rewards", "llm", "bench"), 3),
    "trainers": 4,
    "pipelines": 5,
    "runs": 6,
}
FORBIDDEN = {  # env wrappers never use torch; agents never step envs; the LLM client stands on layer 0 alone
    "envs": {"torch"},
    "agents": {"embodied_rl.envs"},
    "llm": {"torch", *(f"embodied_rl.{name}" for name, layer in LAYERS.items() if layer > 0 and name != "llm")},
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in `path` (`from embodied_rl import x` counts as embodied_rl.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "embodied_rl" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


SOURCES = sorted(
    [(path, "envs") for path in (ROOT / "envs").glob("*.py")]
    + [
        (path, path.relative_to(ROOT / "embodied_rl").parts[0].removesuffix(".py"))
        for path in (ROOT / "embodied_rl").rglob("*.py")
        if path.relative_to(ROOT / "embodied_rl").parts[0] in {*LAYERS, *(f"{name}.py" for name in LAYERS)} - {"envs"}
    ]
)


def test_every_package_has_a_layer():
    packages = {p.name.removesuffix(".py") for p in (ROOT / "embodied_rl").iterdir() if p.name != "__pycache__"}
    assert packages - {"__init__", "py.typed"} <= {*LAYERS}, "give the new package a layer in LAYERS"


@pytest.mark.parametrize("path, layer", SOURCES, ids=[str(p.relative_to(ROOT)) for p, _ in SOURCES])
def test_imports_point_down_the_layers(path, layer):
    modules = imported_modules(path)
    targets = {m: layer_of(m) for m in modules}
    upward = sorted(m for m, to in targets.items() if to and to != layer and LAYERS[to] >= LAYERS[layer])
    assert not upward, f"{path.relative_to(ROOT)} ({layer}, layer {LAYERS[layer]}) imports {upward}"
    banned = sorted(m for m in modules for f in FORBIDDEN.get(layer, ()) if m == f or m.startswith(f + "."))
    assert not banned, f"{path.relative_to(ROOT)} must not import {banned}"
