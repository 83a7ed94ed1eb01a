"""The inference graph: values (name, shape, dtype, constant data), nodes (op, inputs, outputs,
attributes, epilogue) and the graph's inputs and outputs.

Front-ends (``pyconv.onnx.load``, later ``pyconv.torch``) build a :class:`Graph` whose ops are
the ones :mod:`pyconv.inference.ops` knows, in their newest-opset ONNX form (attributes that
older opsets passed as attributes arrive as constant inputs). Names of absent optional inputs
are ``""``.
"""
import numpy as np

__all__ = ["GraphError", "UnsupportedError", "Node", "Graph"]


class GraphError(ValueError):
    """A graph that cannot be run: malformed, or a shape that does not fit (the message names the
    node, its op type and the shapes)."""


class UnsupportedError(GraphError):
    """Operators, dtypes or attribute values pyconv does not run; ``problems`` lists every one."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} unsupported construct(s) in the model:\n  " +
                         "\n  ".join(self.problems))


class Node:
    """One operation. ``epilogue`` (Conv only) lists what runs on the conv's output before
    anyone reads it: ``("add", k)`` adds the node's input ``k`` (a residual of the same shape),
    ``(act, params)`` applies an activation in place (see ``ops.ACTIVATIONS``)."""

    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "epilogue", "fused")

    def __init__(self, op, inputs, outputs, attrs=None, name="", epilogue=(), fused=()):
        self.op, self.name = op, name or f"{op}_{outputs[0]}"
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.attrs = dict(attrs or {})
        self.epilogue = tuple(epilogue)
        self.fused = tuple(fused)  # the names of the nodes folded or fused into this one

    def copy(self, **changes):
        n = Node(self.op, self.inputs, self.outputs, self.attrs, self.name, self.epilogue, self.fused)
        for k, v in changes.items():
            setattr(n, k, v)
        return n

    def where(self):
        return f"node {self.name!r} ({self.op})"

    def __repr__(self):
        ep = f" epilogue={list(self.epilogue)}" if self.epilogue else ""
        return f"<{self.op} {self.name!r} {self.inputs} -> {self.outputs}{ep}>"


class Graph:
    """Nodes in a runnable (topological) order, constants (``initializers``: name -> ndarray), the
    graph's inputs (name -> (shape, dtype); shape entries may be None or a name for a free batch
    size) and its output names."""

    def __init__(self, nodes, inputs, outputs, initializers, name="graph"):
        self.nodes = list(nodes)
        self.inputs = dict(inputs)
        self.outputs = list(outputs)
        self.initializers = dict(initializers)
        self.name = name

    def copy(self):
        return Graph([n.copy() for n in self.nodes], self.inputs, self.outputs, self.initializers, self.name)

    def producers(self):
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self):
        use = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    use.setdefault(i, []).append(n)
        return use

    def toposort(self):
        """Order the nodes so that each runs after the producers of its inputs; GraphError names
        a node that reads a value nothing produces, or the nodes of a cycle."""
        known = set(self.inputs) | set(self.initializers)
        made = {}
        for n in self.nodes:
            for o in n.outputs:
                if o in made or o in known:
                    raise GraphError(f"{n.where()}: its output {o!r} is also produced by "
                                     f"{made[o].where() if o in made else 'the graph inputs or initializers'}")
                if o:
                    made[o] = n
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in known and i not in made:
                    raise GraphError(f"{n.where()}: input {i!r} is neither a graph input, an initializer nor the "
                                     "output of a node (a missing initializer?)")
        for o in self.outputs:
            if o not in known and o not in made:
                raise GraphError(f"graph output {o!r} is produced by no node")
        done, order, pending = set(known), [], list(self.nodes)
        while pending:
            rest = []
            for n in pending:
                if all(not i or i in done for i in n.inputs):
                    order.append(n)
                    done.update(o for o in n.outputs if o)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise GraphError("the nodes " + ", ".join(n.where() for n in rest[:5]) + " form a cycle")
            pending = rest
        self.nodes = order
        return self

    def prune(self):
        """Drop nodes none of whose outputs reaches a graph output."""
        need = set(self.outputs)
        keep = []
        for n in reversed(self.nodes):
            if any(o in need for o in n.outputs):
                keep.append(n)
                need.update(i for i in n.inputs if i)
        self.nodes = keep[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in need}
        return self

    def parameters(self):
        return sum(int(np.asarray(v).size) for v in self.initializers.values())
