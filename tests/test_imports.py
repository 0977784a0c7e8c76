"""No import cycles among mug's modules: two modules that import each other belong apart, with what they share in
a third. Imports inside functions count too; a lazy import only hides a cycle until someone moves it."""

import ast
from pathlib import Path

MUG = Path(__file__).resolve().parents[1] / "mug"


def module_name(path: Path) -> str:
    parts = path.relative_to(MUG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the mug modules it imports}, from each file's source (nothing is imported)."""
    paths = {module_name(path): path for path in MUG.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first search, as the modules along it."""
    found, done, stack = [], set(), []

    def visit(name: str) -> None:
        stack.append(name)
        for target in sorted(graph[name]):
            if target in stack:
                found.append(stack[stack.index(target) :] + [target])
            elif target not in done:
                visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    return found


def test_the_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_mug_has_no_import_cycles():
    graph = import_graph()
    assert "mug.data.gate.validate" in graph and "mug.data.gate.checks" in graph["mug.data.gate.validate"]
    assert cycles(graph) == []
