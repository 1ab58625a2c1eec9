"""The import graph points down: core, then worker / producers / fake_hubspot, then the CLI.

Every module of our packages is parsed with `ast`; an import inside a function, a method or an
`if TYPE_CHECKING:` block counts as much as one at the top of the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("eventq", "worker", "producers", "fake_hubspot", "eventq_cli")

# What each layer may import besides itself. `eventq/__main__.py` is the program's entry point:
# only the interpreter runs it (`python -m eventq`), nothing imports it, so it sits with the CLI.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "eventq": frozenset(),
    "fake_hubspot": frozenset({"eventq"}),
    "producers": frozenset({"eventq"}),
    "worker": frozenset({"eventq"}),
    "eventq_cli": frozenset({"eventq", "worker", "producers", "fake_hubspot"}),
}
ENTRY_POINTS = {"eventq.__main__": "eventq_cli"}


def module_name(path: Path) -> str:
    """Return the dotted name of a file under ROOT (a package's `__init__` names the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Return the statements under `if TYPE_CHECKING:` (imports that never run, for annotations)."""
    return {
        inner
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }


def imported_names(path: Path, name: str, with_types: bool = True) -> Iterator[str]:
    """Yield every dotted name module `name` (the file at `path`) imports, wherever it stands;
    without the `if TYPE_CHECKING:` imports when `with_types` is False."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set() if with_types else type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            # `from pkg import mod` imports the module pkg.mod when there is one
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph(modules: dict[str, Path], with_types: bool = True) -> dict[str, set[str]]:
    """Return module -> the modules of ours it imports (names that are not modules are dropped)."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = imported_names(path, name, with_types)
        targets = {target for target in imported if target in modules}
        edges[name] = targets - {name}
    return edges


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def layer_of(module: str) -> str:
    return ENTRY_POINTS.get(module, module.split(".", maxsplit=1)[0])


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Return `a -> b` for every import of a layer that `a`'s layer may not import."""
    return sorted(
        f"{source} -> {target}"
        for source, targets in edges.items()
        for target in targets
        if layer_of(target) != layer_of(source)
        and layer_of(target) not in MAY_IMPORT[layer_of(source)]
    )


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle as a path `[a, b, …, a]`, or None when the graph has none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(edges.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Collapse the module graph to layers (with `eventq.__main__` counted as the CLI)."""
    collapsed: dict[str, set[str]] = {}
    for source, targets in edges.items():
        collapsed.setdefault(layer_of(source), set()).update(
            layer_of(target) for target in targets if layer_of(target) != layer_of(source)
        )
    return collapsed


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    # Given a module of producers whose imports of ours stand inside a function, one relative
    source = tmp_path / "sample.py"
    source.write_text(
        "def late():\n"
        "    import worker.tasks\n"
        "    from eventq_cli import stack\n"
        "    from .enqueue import Producer\n"
    )
    # When its imports are read
    found = set(imported_names(source, "producers.sample"))
    # Then every one is found, with the modules it names
    assert {"worker.tasks", "eventq_cli.stack", "producers.enqueue"} <= found


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    # Given a made-up graph where the core imports the worker, and two modules import each other
    edges = {"eventq.jobs": {"worker.tasks"}, "worker.tasks": {"worker.runtime"}}
    edges["worker.runtime"] = {"worker.tasks"}
    # Then both checks report it
    assert upward_imports(edges) == ["eventq.jobs -> worker.tasks"]
    assert find_cycle(edges) == ["worker.tasks", "worker.runtime", "worker.tasks"]


def test_every_package_of_ours_is_read() -> None:
    modules = our_modules()
    # the graph covers the modules that used to import upward, and the new top layer
    for expected in ("eventq.jobs", "worker.tasks", "producers.replay", "eventq_cli.cli"):
        assert expected in modules
    assert sum(bool(targets) for targets in graph(modules).values()) > 50


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(graph(our_modules())) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert find_cycle(graph(our_modules(), with_types=False)) is None


@pytest.mark.xfail(
    strict=True,
    reason="known: producers.http_state names AuditLog, KeyRing and HttpMetrics for its "
    "annotations while those modules read the state from the request; remove this mark once "
    "they are handed what they need instead",
)
def test_no_module_needs_itself_back_even_for_annotations() -> None:
    assert find_cycle(graph(our_modules(), with_types=True)) is None


def test_imports_for_annotations_alone_are_told_apart(tmp_path: Path) -> None:
    # Given a module that imports one module to run and another only for annotations
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import eventq.keys\n"
        "if TYPE_CHECKING:\n"
        "    from eventq.jobs import JobStore\n"
    )
    # When the imports that run are read, and then all of them
    running = set(imported_names(source, "worker.sample", with_types=False))
    every = set(imported_names(source, "worker.sample"))
    # Then the annotation-only import is left out of the first alone
    assert "eventq.keys" in running
    assert "eventq.jobs" not in running
    assert "eventq.jobs" in every


def test_no_package_imports_itself_back_through_others() -> None:
    assert find_cycle(package_edges(graph(our_modules()))) is None


@pytest.mark.parametrize("package", ["producers", "fake_hubspot"])
def test_producers_and_the_fake_never_import_the_worker(package: str) -> None:
    # architecture: a service that only enqueues stays light (no aiohttp client, no worker.tasks)
    edges = graph(our_modules())
    into_worker = sorted(
        f"{source} -> {target}"
        for source, targets in edges.items()
        if source.startswith(f"{package}.") or source == package
        for target in targets
        if layer_of(target) == "worker"
    )
    assert into_worker == []


def test_nothing_imports_the_entry_point_shim() -> None:
    edges = graph(our_modules())
    assert [source for source, targets in edges.items() if "eventq.__main__" in targets] == []
