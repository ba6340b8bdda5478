"""The package's layering holds: no import circles, no import from a lower layer up to a higher one, at most
ten modules at the package root, and only hosts/ imports the host (issue 11's rules, checked on every change).

Every import statement counts, at module level or inside a function. The package root (``chatflow_plugin``
itself: ``__version__`` and the lazy ``register()`` facade) is left out of the graph."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chatflow_plugin"
ROOT_LEAVES = {"errors", "options", "files", "outputs", "resources", "tokenizer", "languages"}
LAYERS = {"data": 1, "checkpoints": 2, "hosts": 3, "clo": 4, "evaluation": 4, "search": 4, "demo": 5, "cli": 6}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:   # a name inside a module: credit the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) - {"chatflow_plugin"} for name, path in modules.items()}
    graph.pop("chatflow_plugin")
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in ROOT_LEAVES:
        return 0
    return LAYERS[parts[1]]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_no_import_from_a_lower_layer_up_to_a_higher_one():
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets
              if b.startswith("chatflow_plugin.") and _layer(a) < _layer(b)]
    assert upward == []


def test_the_package_root_holds_at_most_ten_modules():
    root = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(root) <= 10, root
    assert set(root) - {"__init__", "cli"} <= ROOT_LEAVES, root


def test_only_hosts_import_the_host():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "hosts" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] == "tencentpretrain"]
    assert offenders == []
