"""The package's shape: no import circle (module-level or deferred), a core that imports no model code,
registries that import no model modules, no module over 500 lines (one past that is doing two jobs)."""

import ast
from pathlib import Path

import ganscan

ROOT = Path(ganscan.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the ganscan modules it imports anywhere in its body (``from pkg import sub`` counts as sub)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    if f"{base}.{a.name}" in mods:
                        deps.add(f"{base}.{a.name}")
                    elif base in mods:
                        deps.add(base)
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_and_registries_import_no_model_code():
    graph = _graph()
    models = ("ganscan.detectors", "ganscan.gans", "ganscan.commands", "ganscan.reports")
    for name, deps in graph.items():
        if name.startswith("ganscan.core"):
            assert not [d for d in deps if d.startswith(models)], name
    assert graph["ganscan.detectors.registry"] <= {"ganscan.errors", "ganscan.core.checkpoint",
                                                   "ganscan.detectors.pretrained"}
    assert not [d for d in graph["ganscan.gans.registry"] if d.startswith(models)]



def test_no_module_over_500_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 500} == {}
