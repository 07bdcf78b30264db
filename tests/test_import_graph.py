"""The project's modules import each other without a cycle, counting imports inside functions too."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [ROOT / "src", *sorted((ROOT / "backends").glob("*/src"))]


def _modules() -> dict[str, Path]:
    found = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The names an import statement may refer to: modules, or packages and the names taken from them."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative to the module's package
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _type_checking_only(tree: ast.Module) -> set[int]:
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    return {id(inner) for block in blocks for inner in ast.walk(block)}


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of the project's other modules (its own parent packages left out)."""
    modules = _modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skipped:
                continue
            for name in _imported(module, path, node):
                if name in modules and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def test_the_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert graph["maskinporten_auth.auth"], "the graph must see imports, or this test proves nothing"
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None


def test_the_token_path_is_layered_adapters_over_provider_over_endpoints():
    graph = import_graph()
    auth, provider, endpoints = (f"maskinporten_auth.{name}" for name in ("auth", "provider", "endpoints"))
    higher = {provider: {auth}, endpoints: {auth, provider}, "maskinporten_auth.cache": {auth, provider, endpoints}}
    for module, above in higher.items():
        assert not graph[module] & above, f"{module} imports {graph[module] & above}, a room above it"
    assert {provider, endpoints} <= graph[auth]
