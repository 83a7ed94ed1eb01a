"""pyconv's Python modules form acyclic layers with data flowing down (README "Layout").

Read from the source with ``ast`` (no import runs), counting function-level imports too: a lazy
import is still a dependency, it only hides the cycle until run time.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "pyconv"

# Lowest layer first. A module may import its own layer or any layer below, never one above;
# the package facade pyconv/__init__.py sits on top of everything. A prefix ending in "." names
# a subpackage and all its modules.
LAYERS = [
    ("base", ["datasets", "_core", "_import_error", "_runtime", "_utils", "random", "npzfile", "outputs", "images", "zoo"]),
    ("functional", ["functional", "functional.", "_reference"]),
    ("tensor", ["tensor", "autograd", "ops"]),
    ("nn", ["nn", "nn.", "optim"]),
    ("inference", ["inference", "inference."]),
    ("tools", ["model_spec", "data", "train", "distributed", "summary", "viz", "check", "bench", "models", "model_graph", "checkpoint",
               "formats", "formats.", "serve", "serve.", "torch", "torch.", "onnx", "onnx."]),
    ("cli", ["cli", "cli_args", "cli_train", "cli_onnx", "__main__"]),
]


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    mods = {_module_name(p): p for p in ROOT.rglob("*.py")}
    mods["pyconv._core"] = None  # the C++ extension
    return mods


def _imports(name, path, known):
    """The pyconv modules that module `name` (file `path`) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()

    def add(target, names=()):
        # `from X import y` depends on X.y when that is a module, else on X itself
        subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
        if subs:
            out.update(subs)
        if len(subs) < len(names) or not names:
            if target in known:
                out.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "pyconv" or a.name.startswith("pyconv."):
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "pyconv" or target.startswith("pyconv."):
                add(target, [a.name for a in node.names])
    out.discard(name)
    return out


def import_graph():
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items() if path is not None}


def layer_of(module):
    rel = module[len("pyconv."):] if module != "pyconv" else ""
    if not rel:
        return len(LAYERS)  # the facade
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if rel == m or (m.endswith(".") and rel.startswith(m)):
                return i
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py's LAYERS; add it to one")


def find_cycles(graph):
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_the_known_edges(graph):
    # guards the parser: a graph with no edges would pass everything below
    assert "pyconv.functional" in graph["pyconv.nn.layers"]
    assert "pyconv._core" in graph["pyconv._runtime"]
    assert "pyconv.check" in graph["pyconv.cli"]  # a function-level import


def test_no_import_cycles(graph):
    cycles = find_cycles(graph)
    assert not cycles, "pyconv's modules import each other in a cycle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer_of(name)


def test_imports_point_down_the_layers(graph):
    up = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
                for m, targets in graph.items() for t in targets
                if t != "pyconv" and layer_of(t) > layer_of(m))
    assert not up, "imports pointing up the layer diagram:\n" + "\n".join(up)


def test_functional_imports_only_core_and_utils(graph):
    allowed = {"pyconv._core", "pyconv._utils", "pyconv.random"}  # random: the default generator (dropout)
    for m, targets in graph.items():
        if m == "pyconv.functional" or m.startswith("pyconv.functional."):
            bad = {t for t in targets if t not in allowed and not t.startswith("pyconv.functional")}
            assert not bad, f"{m} imports {sorted(bad)}; functional may import only _core, _utils and random"


def test_nothing_imports_the_facade(graph):
    users = sorted(m for m, targets in graph.items() if "pyconv" in targets)
    assert not users, f"modules importing the package facade pyconv/__init__.py: {users}"
