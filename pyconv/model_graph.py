"""Graph model files: nets that branch and join, as a table of named nodes.

::

    {"input": "data",
     "nodes": [{"name": "conv1", "type": "Conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
               {"name": "relu1", "type": "ReLU"},
               {"name": "conv2", "type": "Conv2d", "inputs": ["data"], "out_channels": 16, "kernel_size": 1},
               {"name": "sum", "type": "Eltwise", "inputs": ["relu1", "conv2"]},
               {"name": "fc", "type": "Linear", "out_features": "classes"}],
     "output": "fc"}

Each node has a ``name``, a ``type`` and the layer's fields as in a layer list (torch's names,
input sizes inferred), and ``inputs``: the names of the nodes (or of the graph's ``input``,
default ``"input"``) it reads, in order; without it, the node before (or the input). ``output``
defaults to the last node. Nodes are listed after the nodes they read. A ``Linear`` reading an
image-shaped volume gets a ``Flatten`` node before it (named ``<node>_flatten``). Optional keys:
``input_shape`` (the (C, H, W) the file declares), ``name``, ``source``, ``file`` and ``notes``
(what a translation from another format left out), all informative.

This is what Caffe prototxt files become (:mod:`pyconv.formats.caffe`), and what a checkpoint
of an :class:`pyconv.nn.Graph` stores.
"""
from . import nn
from .model_spec import ModelSpecError, layer_type, make_layer

__all__ = ["build_graph", "spec_from_graph", "GRAPH_KEYS"]

GRAPH_KEYS = ("nodes", "input", "output", "input_shape", "name", "source", "file", "notes")


def _label(node, index):
    origin = node.get("origin") if isinstance(node, dict) else None
    if isinstance(origin, dict) and origin.get("where"):
        return origin["where"]
    name = node.get("name") if isinstance(node, dict) else None
    return f"node {name!r}" if name else f"node {index}"


def build_graph(spec, input_shape, num_classes):
    """(nn.Graph, output shape, how messages name the output node, its entry) for a graph table,
    checking every node's fields and shapes (ModelSpecError naming the node)."""
    where = spec.get("file") or "the graph"
    unknown = sorted(set(spec) - set(GRAPH_KEYS))
    if unknown:
        raise ModelSpecError(f"{where}: unknown key(s) {', '.join(unknown)} in a graph table; valid: "
                             f"{', '.join(GRAPH_KEYS)}")
    nodes = spec.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ModelSpecError(f"{where}: 'nodes' must be a non-empty list of nodes")
    input_name = spec.get("input", "input")
    if not isinstance(input_name, str) or not input_name:
        raise ModelSpecError(f"{where}: 'input' must be a name, got {input_name!r}")
    shapes = {input_name: tuple(input_shape)}
    entries, built, prev = {}, [], input_name
    for i, node in enumerate(nodes):
        label = _label(node, i)
        if not isinstance(node, dict):
            raise ModelSpecError(f"node {i}: expected a table/object with a 'name' and a 'type', got {node!r}")
        name = node.get("name")
        if not isinstance(name, str) or not name or "." in name:
            raise ModelSpecError(f"{label}: 'name' must be a non-empty string without '.', got {name!r}")
        if name in shapes:
            raise ModelSpecError(f"{label}: the name {name!r} is used twice")
        ins = node.get("inputs", [prev])
        if isinstance(ins, str):
            ins = [ins]
        if not isinstance(ins, list) or not ins or not all(isinstance(x, str) for x in ins):
            raise ModelSpecError(f"{label}: 'inputs' must be a name or a non-empty list of names, got {ins!r}")
        missing = [x for x in ins if x not in shapes]
        if missing:
            later = [x for x in missing if any(isinstance(n, dict) and n.get("name") == x for n in nodes)]
            why = "which come(s) later: list nodes after the nodes they read" if later else "which no node is named"
            raise ModelSpecError(f"{label}: reads {', '.join(map(repr, missing))}, {why} (the input is "
                                 f"{input_name!r})")
        kind, _ = layer_type(label, node)
        in_shapes = [shapes[x] for x in ins]
        if kind == "Linear" and len(in_shapes[0]) == 3:
            flat = f"{name}_flatten"
            while flat in shapes or any(isinstance(n, dict) and n.get("name") == flat for n in nodes):
                flat += "_"
            c, h, w = in_shapes[0]
            built.append((flat, nn.Flatten(), list(ins)))
            shapes[flat] = (c * h * w,)
            ins, in_shapes = [flat], [(c * h * w,)]
        module, out = make_layer(label, node, in_shapes, num_classes, skip=("type", "name", "inputs"))
        built.append((name, module, list(ins)))
        shapes[name], entries[name] = out, node
        prev = name
    output = spec.get("output", prev)
    if output not in entries:
        raise ModelSpecError(f"{where}: 'output' {output!r} is not a node" + (" (it is the input)"
                                                                             if output == input_name else ""))
    graph = nn.Graph(built, inputs=input_name, output=output)
    index = next(i for i, n in enumerate(nodes) if n.get("name") == output)
    last = entries[output]
    kind, _ = layer_type(_label(last, index), last)
    origin = last.get("origin")
    label = origin["where"] if isinstance(origin, dict) and origin.get("where") else f"node {output!r} ({kind})"
    return graph, shapes[output], label, last


def spec_from_graph(graph, describe):
    """The graph table that rebuilds ``graph`` (``describe(label, module)`` gives one node's
    type and fields); ModelSpecError when a node cannot be described."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelSpecError(f"a Graph with {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s) cannot be "
                             "described as a model file (one input image, one output)")
    nodes = []
    for name, module, ins in graph.nodes():
        entry = describe(f"node {name!r}", module)
        nodes.append(dict({"name": name}, **entry, inputs=ins))
    order = list(graph.order)
    if [n["name"] for n in nodes] != order:  # a file lists nodes after the nodes they read
        by_name = {n["name"]: n for n in nodes}
        nodes = [by_name[n] for n in order]
    return {"input": graph.inputs[0], "nodes": nodes, "output": graph.outputs[0]}

