"""Nets that branch and join: :class:`Graph` runs named nodes in topological order, and the
joining layers :class:`Concat` and :class:`Eltwise` (Caffe's Concat and Eltwise layers)."""
from collections import OrderedDict

import numpy as np

from .. import ops
from .module import Module

__all__ = ["Graph", "Concat", "Eltwise"]


class Concat(Module):
    """Concatenates its inputs along ``dim`` (1: channels, counted with the batch axis, as
    ``torch.cat``); every other size must agree."""

    def __init__(self, dim=1):
        super().__init__()
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise ValueError(f"Concat: dim must be an int, got {dim!r}")
        self.dim = int(dim)

    def forward(self, *inputs):
        return ops.cat(inputs, self.dim)

    def output_shape(self, *shapes):
        nd = len(shapes[0]) + 1
        if not -nd < self.dim < nd or self.dim % nd == 0:
            raise ValueError(f"Concat: dim={self.dim} is not an axis after the batch axis of a {nd}-D input")
        d = self.dim % nd - 1
        rest = lambda s: tuple(s[:d]) + tuple(s[d + 1:])  # noqa: E731
        for i, s in enumerate(shapes[1:], 1):
            if len(s) != len(shapes[0]) or rest(s) != rest(shapes[0]):
                raise ValueError(f"Concat: input {i} has shape {tuple(s)}, which does not match input 0's "
                                 f"{tuple(shapes[0])} except along dim {self.dim}")
        return tuple(shapes[0][:d]) + (sum(s[d] for s in shapes),) + tuple(shapes[0][d + 1:])

    def flops(self, input_shapes, output_shape):
        return 0

    def extra_repr(self):
        return f"dim={self.dim}"


_OPS = ("sum", "prod", "max")


class Eltwise(Module):
    """Elementwise ``operation`` of inputs of one shape (Caffe's Eltwise layer): ``"sum"``
    (weighted by ``coeffs``, one per input, when given), ``"prod"`` or ``"max"`` (Caffe's tie
    rule, see :func:`pyconv.ops.eltwise_max`)."""

    def __init__(self, operation="sum", coeffs=None):
        super().__init__()
        if operation not in _OPS:
            raise ValueError(f"Eltwise: operation must be one of {_OPS}, got {operation!r}")
        if coeffs is not None:
            if operation != "sum":
                raise ValueError(f"Eltwise: coeffs apply to operation='sum' only, got operation={operation!r}")
            coeffs = [float(c) for c in coeffs]
        self.operation, self.coeffs = operation, coeffs

    def forward(self, *inputs):
        if self.coeffs is not None and len(self.coeffs) != len(inputs):
            raise ValueError(f"Eltwise: {len(self.coeffs)} coeffs for {len(inputs)} inputs")
        if self.operation == "max":
            return ops.eltwise_max(inputs)
        out = None
        for i, x in enumerate(inputs):
            if self.operation == "sum" and self.coeffs is not None and self.coeffs[i] != 1:
                x = x * self.coeffs[i]
            out = x if out is None else (out + x if self.operation == "sum" else out * x)
        return out

    def output_shape(self, *shapes):
        if len(shapes) < 2:
            raise ValueError(f"Eltwise needs at least 2 inputs, got {len(shapes)}")
        if self.coeffs is not None and len(self.coeffs) != len(shapes):
            raise ValueError(f"Eltwise: {len(self.coeffs)} coeffs for {len(shapes)} inputs (one per input)")
        for i, s in enumerate(shapes[1:], 1):
            if tuple(s) != tuple(shapes[0]):
                raise ValueError(f"Eltwise: input {i} has shape {tuple(s)} but input 0 has {tuple(shapes[0])}: "
                                 "the shapes must be equal")
        return tuple(shapes[0])

    def flops(self, input_shapes, output_shape):
        return int(np.prod(output_shape)) * (len(input_shapes) - 1 + (len(input_shapes) if self.coeffs else 0))

    def extra_repr(self):
        return f"operation={self.operation!r}" + (f", coeffs={self.coeffs}" if self.coeffs is not None else "")


def _names(v, what):
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)) and v and all(isinstance(s, str) for s in v):
        return list(v)
    raise ValueError(f"Graph: {what} must be a name or a non-empty list of names, got {v!r}")


class Graph(Module):
    """A net of named nodes, each a module applied to the outputs of earlier nodes (or of the
    graph's inputs), run in topological order with autograd.

    ``Graph([("conv1", nn.Conv2d(1, 8, 3), "input"), ("relu1", nn.ReLU(), "conv1"), ...],
    inputs="input", output="fc")``: ``nodes`` are ``(name, module, inputs)`` triples (inputs: a
    name or a list of names; a module with several inputs, such as :class:`Concat`, receives them
    in that order). ``output`` (default: the node run last) may be a list, and ``forward`` then
    returns a tuple. The nodes are the graph's children, so ``state_dict`` keys are
    ``"<node>.<parameter>"``; ``graph["conv1"]`` is a node's module, ``graph.node_inputs("conv1")``
    its inputs. Values are released as soon as their last consumer has run.
    """

    def __init__(self, nodes, inputs="input", output=None):
        super().__init__()
        input_names = _names(inputs, "inputs")
        items = nodes.items() if isinstance(nodes, (dict, OrderedDict)) else nodes
        edges = OrderedDict()
        for entry in items:
            if isinstance(nodes, (dict, OrderedDict)):
                name, (module, ins) = entry
            else:
                if not isinstance(entry, (tuple, list)) or len(entry) != 3:
                    raise ValueError(f"Graph: each node must be a (name, module, inputs) triple, got {entry!r}")
                name, module, ins = entry
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Graph: node names must be non-empty strings without '.', got {name!r}")
            if name in edges or name in input_names:
                raise ValueError(f"Graph: the name {name!r} is used twice")
            if not isinstance(module, Module):
                raise TypeError(f"Graph: node {name!r} is a {type(module).__name__}, not a Module")
            edges[name] = _names(ins, f"the inputs of node {name!r}")
            self._modules[name] = module
        if not edges:
            raise ValueError("Graph: needs at least one node")
        known = set(edges) | set(input_names)
        for name, ins in edges.items():
            bad = [i for i in ins if i not in known]
            if bad:
                raise ValueError(f"Graph: node {name!r} reads {', '.join(map(repr, bad))}, which is neither a node nor "
                                 f"an input (inputs: {', '.join(input_names)})")
        object.__setattr__(self, "_edges", edges)
        object.__setattr__(self, "inputs", tuple(input_names))
        object.__setattr__(self, "_order", self._toposort())
        outputs = _names(output, "output") if output is not None else [self._order[-1]]
        bad = [o for o in outputs if o not in known]
        if bad:
            raise ValueError(f"Graph: output {', '.join(map(repr, bad))} is not a node or an input")
        object.__setattr__(self, "outputs", tuple(outputs))
        last = {}
        for step, name in enumerate(self._order):
            for i in edges[name]:
                last[i] = step
        object.__setattr__(self, "_last_use", last)

    def _toposort(self):
        """Kahn's algorithm, taking nodes in insertion order whenever several are ready."""
        edges = self._edges
        done = set(self.inputs)
        order, pending = [], list(edges)
        while pending:
            for name in pending:
                if all(i in done for i in edges[name]):
                    break
            else:
                raise ValueError(f"Graph: the nodes {', '.join(map(repr, pending))} form a cycle (each waits for "
                                 "another)")
            pending.remove(name)
            order.append(name)
            done.add(name)
        return tuple(order)

    @property
    def output(self):
        return self.outputs[0] if len(self.outputs) == 1 else self.outputs

    @property
    def order(self):
        """The node names in the order ``forward`` runs them."""
        return self._order

    def node_inputs(self, name):
        return list(self._edges[name])

    def nodes(self):
        """``(name, module, inputs)`` per node, in insertion order."""
        return [(name, self._modules[name], list(ins)) for name, ins in self._edges.items()]

    def __getitem__(self, name):
        return self._modules[name]

    def __len__(self):
        return len(self._modules)

    def forward(self, *inputs):
        if len(inputs) != len(self.inputs):
            raise ValueError(f"Graph: expected {len(self.inputs)} input(s) ({', '.join(self.inputs)}), "
                             f"got {len(inputs)}")
        values = dict(zip(self.inputs, inputs))
        keep = set(self.outputs)
        for step, name in enumerate(self._order):
            ins = self._edges[name]
            values[name] = self._modules[name](*[values[i] for i in ins])
            for i in ins:
                if self._last_use.get(i) == step and i not in keep:
                    values.pop(i, None)
        out = tuple(values[o] for o in self.outputs)
        return out[0] if len(out) == 1 else out

    def extra_repr(self):
        return f"inputs={', '.join(self.inputs)}"

    def __repr__(self):
        lines = []
        for name, ins in self._edges.items():
            sub = repr(self._modules[name]).replace("\n", "\n  ")
            lines.append(f"({name}): {sub} <- {', '.join(ins)}")
        lines.append(f"output: {', '.join(self.outputs)}")
        return f"Graph(inputs={', '.join(self.inputs)}\n  " + "\n  ".join(lines) + "\n)"
