"""The import graph of rnnkit has no cycles and points the way DESIGN.md draws it.

Every module under rnnkit/ is parsed (not imported) and every import of an rnnkit
module is an edge, function-level imports included: a cycle that only a lazy import
keeps from failing at import time is still a cycle a reader has to untangle.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rnnkit"

# Edges that close a cycle and are known, each with the change that removes it; delete
# the entry when that change lands.
KNOWN_CYCLE_EDGES = set()  # none left: every cycle the test finds is a failure


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name):
    relative = Path(*name.split("."))
    return ((PACKAGE.parent / relative).with_suffix(".py").is_file()
            or (PACKAGE.parent / relative / "__init__.py").is_file())


def imported_modules(path):
    """The rnnkit modules ``path`` imports, anywhere in the file."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from rnnkit.a import b` imports rnnkit.a.b if a module
                full = f"{base}.{alias.name}"
                found.add(full if is_module(full) else base)
    return {name for name in found
            if (name == "rnnkit" or name.startswith("rnnkit.")) and name != this}


def import_graph():
    return {module_name(path): imported_modules(path)
            for path in sorted(PACKAGE.rglob("*.py"))}


def cycles(graph, ignored=frozenset()):
    """One cycle (a list of modules, first == last) per strongly connected group."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if (node, target) in ignored:
                continue
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_checker_finds_a_cycle_through_a_function_level_import():
    graph = {"rnnkit.a": {"rnnkit.b"}, "rnnkit.b": {"rnnkit.c"}, "rnnkit.c": {"rnnkit.a"}}
    assert cycles(graph) == [["rnnkit.a", "rnnkit.b", "rnnkit.c", "rnnkit.a"]]
    assert cycles(graph, {("rnnkit.c", "rnnkit.a")}) == []
    source = PACKAGE / "cli_tasks.py"
    assert "rnnkit.training.task_trainer" in imported_modules(source)  # inside a function


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 30 and "rnnkit.cli_run" in graph
    assert cycles(graph, KNOWN_CYCLE_EDGES) == []


COMMANDS = ("rnnkit.cli", "rnnkit.cli_run", "rnnkit.cli_tasks", "rnnkit.cli_plot",
            "rnnkit.cli_forecast", "rnnkit.cli_hopfield", "rnnkit.cli_images",
            "rnnkit.demo")


def within(module, package):
    return module == package or module.startswith(package + ".")


def importers(graph, target):
    return sorted(m for m, targets in graph.items()
                  if any(within(t, target) for t in targets) and not within(m, target))


def test_imports_point_down_the_layers():
    graph = import_graph()
    # only the demo, a command of its own, calls the CLI; the two command modules share
    # rnnkit.cli_run and cli_tasks never imports cli
    assert importers(graph, "rnnkit.cli") == ["rnnkit.demo"]
    # (the command modules: rnnkit.cli and rnnkit.cli_<side>, e.g. cli_tasks, cli_plot)
    users = importers(graph, "rnnkit.cli_run")
    assert {"rnnkit.cli", "rnnkit.cli_tasks", "rnnkit.cli_plot"} <= set(users)
    assert all(m == "rnnkit.cli" or m.startswith("rnnkit.cli_") for m in users), users
    # plots are drawn by the commands that report, never by the trainer
    assert set(importers(graph, "rnnkit.viz")) <= set(COMMANDS)
    below = {"rnnkit.data": ("rnnkit.training", "rnnkit.models", "rnnkit.viz"),
             "rnnkit.models": ("rnnkit.training", "rnnkit.viz"),
             "rnnkit.training": ("rnnkit.viz",)}
    for layer, above in below.items():
        for module, targets in graph.items():
            if within(module, layer):
                wrong = sorted(t for t in targets
                               if t in COMMANDS or any(within(t, a) for a in above))
                assert not wrong, f"{module} imports {wrong}"
