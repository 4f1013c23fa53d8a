"""The house's layering (docs/design.md#floors): every import of every module of gfsgd,
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


def test_the_parser_sees_function_level_imports(tmp_path):
    """Imports inside functions, methods and blocks count, and a relative import resolves against the package."""
    src = tmp_path / "mod.py"
    src.write_text("import math\n\n\n"
                   "def f():\n    from . import x\n    return x\n\n\n"
                   "class C:\n    def g(self):\n        if True:\n            from .y import z\n        return z\n")
    modules = {"gfsgd.pkg.mod": src, "gfsgd.pkg.x": tmp_path / "x.py"}
    found = imports_of("gfsgd.pkg.mod", src, modules)
    assert [(t, n, line) for t, n, line in found] == [("gfsgd.pkg.x", None, 5), ("gfsgd.pkg.y", "z", 12)]


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
            if src.startswith("gfsgd.regimes") and (dst in ("gfsgd.grid", "gfsgd.results", "gfsgd.cli",
                                                             "gfsgd.network_cli", "gfsgd.plots")
                                                     or dst.startswith("gfsgd.plots.")):
                bad.append((src, dst))
            if src in ("gfsgd.problem", "gfsgd.configs", "gfsgd.curves") and dst not in (
                    "gfsgd.device", "gfsgd.version", "gfsgd.errors", "gfsgd.outputs"):
                bad.append((src, dst))
    assert not bad, f"imports against the layering of docs/design.md: {bad}"


def test_the_plots_sit_above_the_theory():
    """gfsgd.plots imports the theory (its edge lines, predicted curves and fits), so nothing that the theory or a
    regime imports, directly or not, imports the plots (`python -m` entry points, scripts, aside)."""
    edges = graph()
    todo = [m for m in edges if m.startswith(("gfsgd.theory", "gfsgd.regimes")) and not m.endswith(".__main__")]
    seen = set()
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            todo.extend(v for v in edges[u] if not v.endswith(".__main__"))
    assert any(d.startswith("gfsgd.theory") for d in edges["gfsgd.plots.maps"])
    bad = sorted(m for m in seen if m == "gfsgd.plots" or m.startswith("gfsgd.plots."))
    assert not bad, f"reached from the theory or a regime: {bad}"


# ------------------------------------------------------------------------------------------- floors
# docs/design.md#floors: a module imports from its own floor or below, never above (function-level imports and
# importlib.import_module("gfsgd...") lookups included). The longest matching prefix decides a module's floor.
FLOORS = {
    "gfsgd.errors": 0, "gfsgd.version": 0, "gfsgd.device": 0, "gfsgd.progress": 0,
    "gfsgd.problem": 1, "gfsgd.configs": 1, "gfsgd.curves": 1, "gfsgd.schedules": 1, "gfsgd.losses": 1,
    "gfsgd.data": 1, "gfsgd.models": 1, "gfsgd.outputs": 1,
    "gfsgd.updates": 2, "gfsgd.spectrum": 2, "gfsgd.ntk": 2, "gfsgd.classdiag": 2,
    "gfsgd.regimes": 3, "gfsgd.theory": 3,
    "gfsgd.plots": 4, "gfsgd.grid": 4, "gfsgd.results": 4, "gfsgd.builder": 4, "gfsgd.relinearize": 4,
    "gfsgd.recommend": 5,
    "gfsgd.cli": 6, "gfsgd.network_cli": 6, "gfsgd.theory.__main__": 6, "gfsgd.recommend.__main__": 6,
}
FACE = "gfsgd"  # the package's __init__: re-exports, not a room
# no lookup runs up a floor: the deprecated aliases Problem.from_network / Problem.from_operator are attached by the
# package's face (gfsgd/__init__.py), which sits above every room
DEPRECATED_LOOKUPS = set()


def floor_of(module: str):
    best = None
    for prefix, floor in FLOORS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, floor)
    return None if best is None else best[1]


def lookups_of(path: Path) -> list:
    """(module, line) of every importlib.import_module("gfsgd...") / __import__("gfsgd...") with a literal name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and node.args[0].value.startswith("gfsgd") \
                and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) in
                     ("import_module", "__import__")):
            out.append((node.args[0].value, node.lineno))
    return out


def upward_arrows(extra_edges=()):
    mods = all_modules()
    bad = []
    edges = [(name, target, line) for name, path in mods.items() for target, _, line in imports_of(name, path, mods)]
    edges += [(name, target, line) for name, path in mods.items() for target, line in lookups_of(path)]
    edges += [(a, b, 0) for a, b in extra_edges]
    for src, dst, line in edges:
        if src == FACE or dst == src or (src, dst) in DEPRECATED_LOOKUPS:
            continue
        dst_mod = dst if dst in mods else dst.rpartition(".")[0] if dst.rpartition(".")[0] in mods else dst
        fs, fd = floor_of(src), floor_of(dst_mod)
        if fd is not None and fs is not None and fd > fs:
            bad.append(f"{src}:{line} (floor {fs}) -> {dst_mod} (floor {fd})")
    return bad


def test_every_module_sits_on_a_floor():
    missing = [m for m in all_modules() if m != FACE and floor_of(m) is None]
    assert not missing, f"place these modules on a floor of docs/design.md#floors (and in FLOORS): {missing}"


def test_no_import_runs_up_a_floor():
    bad = upward_arrows()
    assert not bad, "imports that run up a floor:\n" + "\n".join(bad)


@pytest.mark.parametrize("edge", [("gfsgd.spectrum.powerlaw", "gfsgd.theory.asymptotics"),
                                  ("gfsgd.plots.maps", "gfsgd.cli"), ("gfsgd.updates.sde", "gfsgd.regimes")])
def test_the_floor_check_catches_an_arrow_up(edge):
    """The arrows that this round removed (spectrum -> theory) or that must never come (a plot or a rule reaching
    up) are caught."""
    assert any(edge[0] in b for b in upward_arrows(extra_edges=[edge]))


def test_importlib_lookups_are_read(tmp_path):
    """A literal importlib lookup counts as an import (no module of gfsgd makes one now: the deprecated aliases that
    did moved to the package's face)."""
    src = tmp_path / "m.py"
    src.write_text("import importlib\n\ndef f():\n    return importlib.import_module('gfsgd.ntk').x\n"
                   "def g():\n    return __import__('gfsgd.spectrum')\n")
    assert sorted(m for m, _ in lookups_of(src)) == ["gfsgd.ntk", "gfsgd.spectrum"]


def test_no_module_is_over_about_450_lines():
    big = {m: n for m, p in all_modules().items() if (n := len(p.read_text().splitlines())) > 460}
    assert not big, f"split these modules by concept (docs/design.md#floors): {big}"
