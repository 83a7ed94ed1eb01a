#!/usr/bin/env python3
"""Structure figures of the source tree (issue 13), rerunnable from the repository root:

    python tools/structure.py            # or: python tools/structure.py --root /path/to/pyconv

Prints: import cycles among pyconv's modules, imports that point up the layer diagram, how many
files spell each registry name as a string literal, the largest source files of cpp/ and pyconv/,
and blocks of lines repeated verbatim. Standard library only; reads files, runs nothing.
"""
import argparse
import ast
import collections
import hashlib
import os
import re
import sys

# The layer diagram, lowest first: a module may import its own layer and the layers below.
LAYERS = [
    ["_core", "_runtime", "_utils", "_import_error"],
    ["functional"],
    ["autograd", "tensor"],
    ["nn", "optim"],
    ["data", "train", "summary", "viz", "check", "bench"],
    ["cli"],
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}

# Registry names and the vocabulary they are spelled in.
REGISTRY = {
    "algorithms": ["auto", "direct", "im2col", "winograd"],
    "padding modes": ["zeros", "reflect", "replicate", "circular"],
    "ISAs": ["scalar", "avx2", "avx512"],
    "directions": ["fwd", "bwd_data", "bwd_weight", "grad_input", "grad_weight"],
}

SOURCE_EXT = (".py", ".cpp", ".h", ".def", ".pyi")
BLOCK = 6  # lines per window when looking for repeated blocks


def source_files(root, tops):
    for top in tops:
        for d, subdirs, files in os.walk(os.path.join(root, top)):
            subdirs[:] = sorted(s for s in subdirs if s not in ("__pycache__", "build") and not s.startswith("."))
            for f in sorted(files):
                if f.endswith(SOURCE_EXT):
                    yield os.path.relpath(os.path.join(d, f), root)


def module_name(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(root, rel, modules):
    """(imported pyconv module, line, lazy) for every import statement of a pyconv module."""
    name = module_name(rel)
    package = name if rel.endswith("__init__.py") else name.rsplit(".", 1)[0]
    tree = ast.parse(open(os.path.join(root, rel), encoding="utf-8").read(), rel)
    top_level = {id(n) for n in tree.body}
    for node in top_level_walk(tree):
        lazy = id(node) not in top_level
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("pyconv"):
                yield t, node.lineno, lazy


def top_level_walk(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def sccs(graph):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def layer(mod):
    parts = mod.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def import_figures(root):
    rels = [r for r in source_files(root, ["pyconv"]) if r.endswith(".py")]
    modules = {module_name(r) for r in rels}
    edges = collections.defaultdict(list)  # (a, b) -> [(file, line, lazy)]
    for r in rels:
        for t, line, lazy in imports_of(root, r, modules):
            edges[(module_name(r), t)].append((r, line, lazy))
    lines = ["## Imports among pyconv modules", f"modules: {len(modules)}, import edges: {len(edges)}"]
    for label, keep in (("all imports", lambda uses: True),
                        ("top-level imports only", lambda uses: any(not lz for _, _, lz in uses))):
        graph = {m: set() for m in modules}
        for (a, b), uses in edges.items():
            if keep(uses) and not b.startswith(a + "."):  # a package importing its own submodules is no cycle
                graph[a].add(b)
        comps = sccs(graph)
        lines.append(f"import cycles ({label}): {len(comps)}")
        for c in comps:
            lines.append("  " + " <-> ".join(c))
    up = []
    for (a, b), uses in sorted(edges.items()):
        la, lb = layer(a), layer(b)
        if la is not None and lb is not None and lb > la:
            where = ", ".join(f"{f}:{ln}{' (lazy)' if lz else ''}" for f, ln, lz in uses)
            up.append(f"  {a} (layer {la}) -> {b} (layer {lb})  [{where}]")
    lines.append("layers (low -> high): " + " <- ".join("/".join(l) for l in LAYERS))
    lines.append(f"imports pointing up the layer diagram: {len(up)}")
    lines.extend(up)
    return lines


def registry_figures(root):
    files = list(source_files(root, ["cpp", "pyconv", "tests", "benchmarks", "tools"]))
    text = {f: open(os.path.join(root, f), encoding="utf-8", errors="replace").read() for f in files}
    lines = ["## Registry names spelled as string literals (\"name\" or 'name'), files per name"]
    for group, names in REGISTRY.items():
        lines.append(f"{group}:")
        for n in names:
            pat = re.compile(r"""(["'])%s\1""" % re.escape(n))
            hits = sorted(f for f, t in text.items() if pat.search(t) and not f.startswith("tools" + os.sep))
            lines.append(f"  {n:<12} {len(hits):>3} files: {' '.join(hits)}")
    return lines


def size_figures(root, top=12):
    lines = ["## Largest source files (lines)"]
    for d in ("cpp", "pyconv"):
        sizes = []
        for f in source_files(root, [d]):
            with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
                sizes.append((sum(1 for _ in fh), f))
        sizes.sort(key=lambda t: (-t[0], t[1]))
        over = [f for n, f in sizes if n > 600]
        lines.append(f"{d}/: {len(sizes)} files, {sum(n for n, _ in sizes)} lines, {len(over)} over 600 lines")
        lines.extend(f"  {n:>5}  {f}" for n, f in sizes[:top])
    return lines


def normalise(line):
    s = line.strip()
    if not s or s.startswith(("//", "#")) or s in ("}", "{", "};", ")", "]", "return true;", "return false;"):
        return None
    return re.sub(r"\s+", " ", s)


def repeat_figures(root, top=15):
    windows = collections.defaultdict(list)
    for f in source_files(root, ["cpp", "pyconv"]):
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            norm = [(i + 1, normalise(l)) for i, l in enumerate(fh)]
        norm = [(i, s) for i, s in norm if s]
        for j in range(len(norm) - BLOCK + 1):
            key = "\n".join(s for _, s in norm[j:j + BLOCK])
            if len(key) < 120:  # short windows are boilerplate, not logic
                continue
            windows[hashlib.sha1(key.encode()).hexdigest()].append((f, norm[j][0], key))
    repeated = {h: v for h, v in windows.items() if len(v) > 1}
    # Overlapping windows of one repeated run count once: keep the first window per (file, run).
    seen, blocks = set(), []
    for h, v in sorted(repeated.items(), key=lambda kv: (-len(kv[1]), kv[1][0][0], kv[1][0][1])):
        locs = tuple((f, ln) for f, ln, _ in v)
        if any((f, ln - d) in seen for f, ln in locs for d in range(1, BLOCK)):
            seen.update(locs)
            continue
        seen.update(locs)
        blocks.append(v)
    lines = [f"## Repeated blocks ({BLOCK} non-trivial lines repeated verbatim in cpp/ and pyconv/)",
             f"distinct repeated blocks: {len(blocks)}, copies: {sum(len(b) for b in blocks)}"]
    for v in blocks[:top]:
        lines.append(f"  x{len(v)}: " + ", ".join(f"{f}:{ln}" for f, ln, _ in v))
        lines.append("      " + v[0][2].split("\n")[0][:100])
    return lines


# Logic known to have been written more than once (issue 13, problem 5): files spelling each.
PATTERNS = {
    "vector-width expression (64/32/16 bytes by ISA)": r"avx512 \? 64 : [^;]*avx2 \? 32",
    "REQUIRE/fail helper definitions": r"\[\[noreturn\]\][^;{]*\bfail\(",
    "'same'-padding split (total t -> t / 2 before, t - t / 2 after)": r"(\w+) //? 2, \1 - \1 //? 2",
    "if-chains choosing an algorithm (functions)": r"ConvAlgo conv2d_choose_algo\([^;]*\{|bool winograd_preferred\([^;]*\{|def _runs_winograd\(",
}


def pattern_figures(root):
    files = list(source_files(root, ["cpp", "pyconv"]))
    lines = ["## Logic written more than once (regex hits: files, occurrences)"]
    for label, pat in PATTERNS.items():
        rx = re.compile(pat)
        hits = {}
        for f in files:
            n = len(rx.findall(open(os.path.join(root, f), encoding="utf-8", errors="replace").read()))
            if n:
                hits[f] = n
        lines.append(f"  {label}: {len(hits)} files, {sum(hits.values())} occurrences: "
                     + " ".join(f"{f}({n})" for f, n in sorted(hits.items())))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="repository root (default: this script's repository)")
    args = ap.parse_args(argv)
    out = []
    for part in (import_figures, registry_figures, size_figures, repeat_figures, pattern_figures):
        out.extend(part(args.root))
        out.append("")
    print("\n".join(out).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
