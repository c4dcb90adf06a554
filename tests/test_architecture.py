"""The layers point one way (docs/architecture.md): every import in the package, lazy ones included, goes to
the module's own layer or one below it."""

from __future__ import annotations

import ast
from pathlib import Path

import resdense

SRC = Path(resdense.__file__).parent
GROUND = {"errors", "preprocess", "modelfile", "rundir", "plots", "utils", "version", "record"}
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


def module_graph() -> dict[str, set[str]]:
    """Each resdense module -> the resdense modules it imports (lazy, function-level imports too): ``from .x
    import name`` is an import of ``x``, ``from . import x`` of ``x``, a package's import of its
    ``__init__``."""
    names = {name.removesuffix(".__init__") for name, _ in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules():
        me = name.removesuffix(".__init__")
        edges = set()
        for target in imports(path):
            # "resdense.serve.load.load_predictor" -> the longest prefix that is a module
            parts = target.split(".")
            while parts and ".".join(parts) not in names:
                parts.pop()
            if parts:
                edges.add(".".join(parts))
        edges.discard(me)
        graph[me] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion is fine: the package has a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(cycle_through(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle inside a strongly connected component, as the modules in import order, the first repeated."""
    start = min(component)
    # breadth-first from start back to start, inside the component: the shortest cycle through it
    paths = {w: [start, w] for w in sorted(graph[start] & component)}
    frontier = list(paths)
    while start not in paths:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return paths[start]


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    found = cycles(module_graph())
    assert not found, "import cycles (lazy imports counted):\n" + "\n".join(" -> ".join(c) for c in found)


def private_imports() -> list[str]:
    """Every ``from resdense.x import _name`` across modules (dunder names such as ``__version__`` are
    public)."""
    found = []
    for name, path in modules():
        me = name.removesuffix(".__init__")
        rel = path.relative_to(SRC.parent).with_suffix("")
        package = list(rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == "resdense" or source.startswith("resdense.")) or source == me:
                continue
            for a in node.names:
                if a.name.startswith("_") and not (a.name.startswith("__") and a.name.endswith("__")):
                    found.append(f"{me} imports {a.name} from {source}")
    return sorted(set(found))


def test_no_private_name_imported_across_modules() -> None:
    found = private_imports()
    assert not found, "private names imported from another module:\n" + "\n".join(found)
