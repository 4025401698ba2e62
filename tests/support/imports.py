"""Every import under a package, read from the source (nothing is run): which module imports
which, at which file and line, and whether it runs when the module is imported (module level)
or only when a function is called. Rules over them, and the import cycles among them.

Function-level imports, imports under `if TYPE_CHECKING:` and `importlib.import_module` /
`__import__` of a literal name are all found; the cycle check counts only what runs at import.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted name of the module whose file has the import
    path: str  # that file, relative to the folder holding the package
    line: int
    target: str  # the module imported (for `from pkg import name`, pkg.name if a module, else pkg)
    module_level: bool  # runs when the importer is imported, not only inside a function
    type_only: bool = False  # under `if TYPE_CHECKING:`: never runs

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def within(module: str, prefixes: Iterable[str]) -> bool:
    """`module` is one of `prefixes` or inside one (myapp.backend.store is within myapp.backend)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _literal_import(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` or `__import__("x")`, if written out."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def _visit(
    node: ast.AST, in_function: bool, type_only: bool
) -> Iterator[tuple[ast.AST, bool, bool]]:
    if isinstance(node, (ast.Import, ast.ImportFrom)) or (
        isinstance(node, ast.Call) and _literal_import(node)
    ):
        yield node, in_function, type_only
    inner = in_function or isinstance(node, _FUNCTIONS)
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        yield from _visit(node.test, inner, type_only)
        for child in node.body:
            yield from _visit(child, inner, True)
        for child in node.orelse:
            yield from _visit(child, inner, type_only)
        return
    for child in ast.iter_child_nodes(node):
        yield from _visit(child, inner, type_only)


def imports_of(path: Path, root: Path, modules: set[str]) -> Iterator[Import]:
    """The imports in `path`, a file of a package under `root`; `modules` (the dotted names of
    every module under root) tells a submodule from a name a package defines."""
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    relative = str(path.relative_to(root))
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    for node, in_function, type_only in _visit(tree, False, False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in modules else source)
        else:
            assert isinstance(node, ast.Call)
            targets = [_literal_import(node) or ""]
        for target in dict.fromkeys(targets):
            yield Import(importer, relative, node.lineno, target, not in_function, type_only)


def scan(package_dir: Path) -> list[Import]:
    """Every import in every .py file under `package_dir` (a package folder such as myapp/)."""
    root = package_dir.parent
    files = sorted(package_dir.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    return [found for path in files for found in imports_of(path, root, modules)]


@dataclass(frozen=True)
class Rule:
    """Modules within `importers` (and not within `exempt`) never import what is within
    `forbidden`, except what is within `allowed`."""

    text: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def broken_by(self, found: Import) -> bool:
        return (
            within(found.importer, self.importers)
            and not within(found.importer, self.exempt)
            and within(found.target, self.forbidden)
            and not within(found.target, self.allowed)
        )


@dataclass
class Cycle:
    modules: list[str]
    edges: list[Import] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"import cycle among {', '.join(self.modules)}:"]
        lines.extend(f"  {e.where} {e.importer} imports {e.target}" for e in self.edges)
        return "\n".join(lines)


def cycles(imports: Iterable[Import], prefix: str) -> list[Cycle]:
    """Groups of modules under `prefix` that import each other, directly or round a loop, with
    imports that run when a module is imported (Tarjan's strongly connected components)."""
    graph: dict[str, list[Import]] = defaultdict(list)
    for found in imports:
        if (
            found.module_level
            and not found.type_only
            and within(found.target, [prefix])
            and found.target != found.importer
        ):
            graph[found.importer].append(found)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for edge in graph.get(module, []):
            if edge.target not in index:
                connect(edge.target)
                low[module] = min(low[module], low[edge.target])
            elif edge.target in on_stack:
                low[module] = min(low[module], index[edge.target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    found_cycles = []
    for group in groups:
        members = set(group)
        edges = [e for m in group for e in graph[m] if e.target in members]
        found_cycles.append(Cycle(group, sorted(edges, key=lambda e: (e.path, e.line))))
    return found_cycles
