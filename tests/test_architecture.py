"""The dependency rule of docs/architecture.md, checked on the source itself.

Every import of our own code, at module level or inside a function, is read
from the syntax tree (nothing is imported), so a lazy import cannot hide a
backward arrow or a cycle. ``make lint`` runs this file too.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lower layers never import higher ones; packages in one layer never import
# each other. ``training`` is plain Python (no Django), below everything.
LAYERS = [
    ["training"],
    ["core"],
    ["cases"],
    ["inference"],
    ["api", "portal", "interop"],
    ["skincare"],
]
LAYER_OF = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
# No app module grows past this without saying why in its first lines.
MAX_LINES = 400
REASON_MARKER = "Why this module is long:"


def _modules():
    for package in LAYER_OF:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES = dict(_modules())


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path) -> set[str]:
    """Our modules that ``module`` imports (``from X import Y`` counts as X.Y when Y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            names = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names
            ]
        else:
            continue
        for name in names:
            # The longest of our modules that the name starts with.
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in MODULES:
                    found.add(candidate)
                    break
    found.discard(module)
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def backward_imports(graph) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        here = module.split(".")[0]
        for target in targets:
            there = target.split(".")[0]
            if there != here and LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{module} imports {target}")
    return sorted(wrong)


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_app_imports_a_layer_above_or_beside_it():
    assert backward_imports(GRAPH) == []


def test_there_are_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_checks_see_a_backward_import_and_a_cycle():
    # The checks themselves, on a made-up graph: a test that cannot fail proves nothing.
    graph = defaultdict(set, {"cases.services": {"inference.services"}, "inference.services": {"cases.services"}})
    assert backward_imports(graph) == ["cases.services imports inference.services"]
    assert cycles(graph) == [["cases.services", "inference.services"]]


def test_lazy_imports_count_too(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from inference import services\n    import portal.views\n")
    assert imports_of("cases.m", path) == {"inference.services", "portal.views"}


def long_modules_without_a_reason(modules) -> list[str]:
    offenders = []
    for module, path in modules.items():
        lines = path.read_text().splitlines()
        if ".migrations." not in module and len(lines) > MAX_LINES and REASON_MARKER not in "\n".join(lines[:30]):
            offenders.append(f"{module} ({len(lines)} lines)")
    return sorted(offenders)


def test_no_module_is_long_without_saying_why():
    assert long_modules_without_a_reason(MODULES) == []


def test_the_length_check_sees_a_long_module(tmp_path):
    quiet, explained = tmp_path / "quiet.py", tmp_path / "explained.py"
    quiet.write_text("x = 1\n" * (MAX_LINES + 1))
    explained.write_text(f'"""{REASON_MARKER} a table."""\n' + "x = 1\n" * MAX_LINES)
    assert long_modules_without_a_reason({"core.quiet": quiet, "core.explained": explained}) == [
        "core.quiet (401 lines)"
    ]
