"""The house's layering (DESIGN.md, "Dependencies point one way"): every import of every module of gfsgd,
function-level ones included, read from the source with ast.

- no import cycle between modules (a package counts as its __init__.py);
- no private name (leading underscore, not a dunder) imported from another module, and a private module
  imported only from inside its own package;
- theory never imports a regime, regimes never import theory, and the engine and regimes never import the
  sweep layer (grid, results, cli, network_cli).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gfsgd"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict) -> list:
    """(target module, imported name or None, line) for every import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "gfsgd":
                    out.append((a.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "gfsgd":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in modules:  # `from . import theory`: the submodule itself
                    out.append((sub, None, node.lineno))
                else:
                    out.append((mod, a.name, node.lineno))
    return out


def graph(modules=None, extra_edges=()):
    modules = modules or all_modules()
    edges = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in imports_of(name, path, modules):
            if target in modules and target != name:
                edges[name].add(target)
    for a, b in extra_edges:
        edges[a].add(b)
    return edges


def find_cycle(edges):
    """One import cycle as a list of modules, or None (depth-first search with colours)."""
    colour, stack = {}, []

    def visit(u):
        colour[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if colour.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in colour:
                found = visit(v)
                if found:
                    return found
        colour[u] = 2
        stack.pop()
        return None

    for u in sorted(edges):
        if u not in colour:
            found = visit(u)
            if found:
                return found
    return None


def test_the_parser_sees_function_level_imports():
    mods = all_modules()
    found = imports_of("gfsgd.plots", mods["gfsgd.plots"], mods)
    assert ("gfsgd.theory", None) in {(t, n) for t, n, _ in found}  # `from . import theory` inside a function


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edge", [("gfsgd.results", "gfsgd.grid"), ("gfsgd.problem", "gfsgd.ntk")])
def test_the_cycle_check_catches_the_old_cycles(edge):
    """Adding back either import that once closed a cycle (results -> grid, problem -> ntk) is caught."""
    cycle = find_cycle(graph(extra_edges=[edge]))
    assert cycle is not None and edge[0] in cycle and edge[1] in cycle


def test_no_private_names_across_modules():
    mods = all_modules()
    bad = []
    for name, path in mods.items():
        for target, imported, line in imports_of(name, path, mods):
            if imported and imported.startswith("_") and not imported.startswith("__"):
                bad.append(f"{path.name}:{line} imports {imported} from {target}")
            leaf = target.rpartition(".")[2]
            own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            if leaf.startswith("_") and not leaf.startswith("__") and target.rpartition(".")[0] != own_package:
                bad.append(f"{path.name}:{line} imports the private module {target} from outside its package")
    assert not bad, "\n".join(bad)


def test_layering():
    edges = graph()
    bad = []
    for src, targets in edges.items():
        for dst in targets:
            if src.startswith("gfsgd.theory") and dst.startswith("gfsgd.regimes"):
                bad.append((src, dst))
            if src.startswith("gfsgd.regimes") and dst.startswith("gfsgd.theory"):
                bad.append((src, dst))
            if src.startswith("gfsgd.regimes") and dst in ("gfsgd.grid", "gfsgd.results", "gfsgd.cli",
                                                            "gfsgd.network_cli", "gfsgd.plots"):
                bad.append((src, dst))
            if src in ("gfsgd.problem", "gfsgd.configs", "gfsgd.curves") and dst not in (
                    "gfsgd.device", "gfsgd.version"):
                bad.append((src, dst))
    assert not bad, f"imports against the layering of DESIGN.md: {bad}"
