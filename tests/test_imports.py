"""No import cycles in ``harness/``: the graph of every ``import`` in its modules, those inside
functions included (a function-level import is still a dependency, only a later one), has
no cycle.  ``bench`` runs the matrix, ``report`` writes reports, ``results`` joins the two
reports, ``__main__`` calls them."""
from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def module_names(pkg: Path) -> dict[str, Path]:
    """``dotted name -> file`` of every module of the package at ``pkg``."""
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph(pkg: Path) -> dict[str, set[str]]:
    """``module -> the modules of the package it imports`` (anywhere in its file).  Importing
    ``a.b.c`` runs ``a.b`` first, so a module outside ``a.b`` that imports ``a.b.c`` depends
    on ``a.b`` too; the root package (an empty ``__init__``) is left out."""
    mods = module_names(pkg)
    root = pkg.name
    graph = {}
    for name, f in mods.items():
        here = name if f.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[:len(here.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods}
                targets |= subs
                if len(subs) < len(node.names):     # a name defined in the module itself
                    targets.add(mod)
        deps = set()
        for t in targets:
            while t and t not in mods:          # `import harness.x.y` where y is a name
                t = t.rpartition(".")[0]
            if not t or t == root:
                continue
            deps.add(t)
            parent = t.rpartition(".")[0]
            while parent and parent != root:    # its packages, unless we are inside them
                if not (name == parent or name.startswith(parent + ".")):
                    deps.add(parent)
                parent = parent.rpartition(".")[0]
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_harness_has_no_import_cycle():
    graph = import_graph(HARNESS)
    assert {"harness.bench", "harness.report", "harness.report_real",
            "harness.__main__"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles in harness/: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_the_layers():
    """The matrix does not know the reports; the reports do not know the matrix; the real
    report builds on the matrix report and not the other way round."""
    g = import_graph(HARNESS)
    assert not g["harness.bench"] & {"harness.report", "harness.report_real", "harness.results"}
    assert "harness.bench" not in g["harness.report"] | g["harness.report_real"]
    assert "harness.report_real" not in g["harness.report"]
    assert {"harness.report", "harness.report_real"} <= g["harness.results"]
    assert {"harness.bench", "harness.results", "harness.report"} <= g["harness.__main__"]


def test_a_cycle_is_found(tmp_path):
    """The detector on a made-up package: a function-level import closes a cycle through a
    subpackage's ``__init__``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import a\n")
    (pkg / "sub" / "leaf.py").write_text("import os\n")
    (pkg / "c.py").write_text("import pkg.sub.leaf\nfrom pkg import a as x\n")
    g = import_graph(pkg)
    assert g["pkg.b"] == {"pkg.sub.leaf", "pkg.sub"}
    assert g["pkg.c"] == {"pkg.sub.leaf", "pkg.sub", "pkg.a"}
    assert g["pkg.sub.leaf"] == set()
    (pkg / "sub" / "other.py").write_text("from . import leaf\n")       # a sibling: no cycle
    (pkg / "sub" / "third.py").write_text("from . import X\n")          # its __init__'s name
    g = import_graph(pkg)
    assert g["pkg.sub.other"] == {"pkg.sub.leaf"} and g["pkg.sub.third"] == {"pkg.sub"}
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.sub"]]
    (pkg / "sub" / "__init__.py").write_text("")
    assert cycles(import_graph(pkg)) == []
