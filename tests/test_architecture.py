"""The layers point one way (docs/architecture.md): every import in the package, lazy ones included, goes to
the module's own layer or one below it."""

from __future__ import annotations

import ast
from pathlib import Path

import resdense

SRC = Path(resdense.__file__).parent
GROUND = {"errors", "preprocess", "modelfile", "rundir", "plots", "utils"}
RANK = {"ground": 0, "models": 1, "data": 1, "serve": 2, "train": 3, "studies": 4, "cli": 5}


def layer(module: str) -> str | None:
    """``resdense.x.y`` -> its layer; None for the package's own ``__init__``/``__main__`` (the front door)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("__init__", "__main__"):
        return None
    if parts[1] in GROUND:
        return "ground"
    return parts[1] if parts[1] in RANK else None  # a name from the package itself (__version__)


def imports(path: Path) -> list[str]:
    """Every resdense module ``path`` imports, resolved to absolute names."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [t for t in targets if t == "resdense" or t.startswith("resdense.")]
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


def test_every_import_points_down_or_sideways() -> None:
    wrong = []
    for name, path in modules():
        mine = layer(name)
        if mine is None:
            continue
        for target in imports(path):
            theirs = layer(target)
            if theirs is None or theirs == mine:
                continue
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and mine != "ground"):
                wrong.append(f"{name} imports {target} ({mine} -> {theirs})")
    assert not wrong, "\n".join(wrong)


def test_only_training_studies_and_the_cli_import_training() -> None:
    users = {layer(name) for name, path in modules() for t in imports(path) if layer(t) == "train"}
    assert users <= {"train", "studies", "cli"}, users


def test_no_module_grows_into_a_grab_bag() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules()}
    assert max(sizes.values()) <= 450, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
