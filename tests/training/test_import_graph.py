"""The training package's import graph: no cycles (function-level imports
included), no Django, and a hashing helper that stays cheap to import."""

import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[2] / "training"


def _resolve(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> list[str]:
    """Fully qualified modules an import statement in ``module`` may load."""
    if isinstance(node, ast.Import):
        return [alias.name]
    if node.level:
        # level 1 is the package holding ``module`` (for training/__init__.py,
        # named training.__init__ here, that is training itself)
        parts = module.split(".")[: -node.level]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    # ``from . import x`` / ``from .pkg import x``: x may be a submodule
    return [base, f"{base}.{alias.name}"]


def import_graph(root: Path = TRAINING) -> dict[str, set[str]]:
    """``{module: training modules it imports}``, every import statement
    anywhere in the file (module level, in functions, under TYPE_CHECKING)."""
    modules = {f"training.{p.stem}": p for p in root.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    deps |= {m for m in _resolve(name, node, alias) if m in modules and m != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # 1: on the stack, 2: done
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_sees_relative_and_function_level_imports(tmp_path):
    (tmp_path / "one.py").write_text("def f():\n    from .two import g\n")
    (tmp_path / "two.py").write_text("from . import one\n")
    (tmp_path / "three.py").write_text("import training.one\n")
    assert import_graph(tmp_path) == {
        "training.one": {"training.two"},
        "training.two": {"training.one"},
        "training.three": {"training.one"},
    }


def test_training_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_training_never_imports_django():
    for path in TRAINING.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "django" for n in names), path.name


def test_relative_imports_resolve_from_the_package(tmp_path):
    (tmp_path / "__init__.py").write_text("from . import one\nfrom .two import x\n")
    (tmp_path / "one.py").write_text("")
    (tmp_path / "two.py").write_text("")
    assert import_graph(tmp_path)["training.__init__"] == {"training.one", "training.two"}
