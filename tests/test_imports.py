"""No import cycles in poptrain: modules form layers (spec and policy below runner, engines and readers)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "poptrain"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits under `if TYPE_CHECKING:` (never executed)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, modules: set[str]) -> set[str]:
    """The poptrain modules a file imports, at module level or inside functions alike."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from where it was entered)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def package_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports(f, modules) for f in files}


def test_the_package_has_no_import_cycle():
    graph = package_graph()
    assert len(graph) > 30 and graph["poptrain.runner"] >= {"poptrain.engines", "poptrain.spec"} and "poptrain.runner" in graph["poptrain.experiment"]
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_check_sees_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


LOWER = ("poptrain.asktell", "poptrain.policy", "poptrain.store", "poptrain.space")
UPPER = ("poptrain.engines", "poptrain.report", "poptrain.cli", "poptrain.export")


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_layers_read_top_down():
    """Ask/tell, the policy, the stores and the space import nothing from the engines, readers, CLI or exporters."""
    graph = package_graph()
    lower = [m for m in graph if under(m, LOWER)]
    assert {"poptrain.asktell.live", "poptrain.asktell.batch", "poptrain.policy.decision", "poptrain.store.sql"} <= set(lower)
    upward = sorted(f"{m} -> {t}" for m in lower for t in graph[m] if under(t, UPPER))
    assert not upward, "imports against the layers: " + "; ".join(upward)


def test_the_layer_check_sees_an_upward_import():
    graph = {"poptrain.asktell.live": {"poptrain.engines.supervisor"}, "poptrain.engines.supervisor": set()}
    assert [t for m in graph if under(m, LOWER) for t in graph[m] if under(t, UPPER)] == ["poptrain.engines.supervisor"]
