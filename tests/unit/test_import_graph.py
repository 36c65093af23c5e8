"""The package's import graph, read with `ast` (top-level and function-local imports alike): no cycle, and
every import goes down the declared floors (`LAYERS`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "crowdselect"

# The packages' floors, lowest first. A package imports its own modules and those of lower floors: never a
# package on its own floor (siblings stay independent) nor one above. Worked out from the imports:
#   core       shared plumbing: columns, errors, config loading, storage, records, log
#   runtime    where work runs: Ray, resources, model files, the in-process executor, lm/ (every model call);
#   report     report.html and its figures, from the files a run wrote (imports core only; select, eval and
#              the pipeline draw with it)
#   pool, generate, reward, crowd       the phases that make the crowd table
#   baselines  model-scored baseline columns (reward models as judges/students), which select's strategies read
#   eval       the student's evaluation; its benchmark question sets are what select decontaminates against
#   select, train                       the phases that use the crowd table
#   pipeline   `crowdselect run` and `experiment`: every phase in order, with the stored stages
#   cli        the commands
LAYERS = (
    ("core",),
    ("runtime", "report"),
    ("pool", "generate", "reward", "crowd"),
    ("baselines", "eval"),
    ("select", "train"),
    ("pipeline",),
    ("cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every crowdselect module `path` imports, anywhere in the file, with the packages each import runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            parts = t.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a.b
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    return (found & known) - own_packages


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_is_read_from_the_files():
    graph = import_graph()
    assert "crowdselect.runtime.resources" in graph["crowdselect.reward.wiring"]
    assert "crowdselect.reward.wiring" in graph["crowdselect.baselines.config"]  # a function-local import


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def package_of(module: str) -> str:
    """crowdselect.reward.judge -> reward; crowdselect.cli -> cli; the root package -> "" (any may import it)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def floor_breaches(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """"a -> b (why)" for every import that goes sideways or up the floors, or from/to an unplaced package."""
    floor = {pkg: i for i, names in enumerate(layers) for pkg in names}
    found = []
    for module, deps in sorted(graph.items()):
        here = package_of(module)
        for dep in sorted(deps):
            there = package_of(dep)
            if not there or there == here:
                continue
            if here not in floor or there not in floor:
                found.append(f"{module} -> {dep} (package not in LAYERS)")
            elif floor[there] == floor[here]:
                found.append(f"{module} -> {dep} (same floor: {here}, {there})")
            elif floor[there] > floor[here]:
                found.append(f"{module} -> {dep} (up: {here} is below {there})")
    return found


def test_floor_breaches_are_seen():
    graph = {"crowdselect.core.a": {"crowdselect.select.b"}, "crowdselect.select.b": {"crowdselect.train.c"},
             "crowdselect.train.c": {"crowdselect.core.a", "crowdselect"}, "crowdselect.new.d": set()}
    assert floor_breaches(graph) == ["crowdselect.core.a -> crowdselect.select.b (up: core is below select)",
                                     "crowdselect.select.b -> crowdselect.train.c (same floor: select, train)"]


def test_every_package_has_a_floor():
    packages = {package_of(m) for m in import_graph()} - {""}
    placed = {p for names in LAYERS for p in names}
    assert packages - placed == set(), "add the new package to LAYERS"
    assert placed - packages == set(), "LAYERS names a package that is gone"


def test_imports_go_down_the_floors():
    assert floor_breaches(import_graph()) == []
