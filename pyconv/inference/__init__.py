"""The fused inference graph both front-ends build (``pyconv.onnx.load``; ``pyconv.torch`` later):
a small IR (:mod:`.graph`), its operators (:mod:`.ops`), passes (:mod:`.passes`: Identity/Dropout
removal, BatchNorm folded into the conv before it, constant folding, bias + residual Add +
activation fused into the conv epilogue) and an executor (:mod:`.executor`: a buffer plan by
liveness and a short loop of pyconv/numpy calls).

The epilogue is recorded on the Conv node (``node.epilogue``) so that a fused C++ kernel can take
it whole; until that exists the executor applies it in place right after pyconv's conv call.
"""
from .executor import PRECISIONS, CompiledGraph, Plan
from .graph import Graph, GraphError, Node, UnsupportedError
from .ops import OPS
from .passes import prepare, specialize

__all__ = ["PRECISIONS", "Graph", "Node", "GraphError", "UnsupportedError", "OPS", "CompiledGraph", "Plan", "prepare",
           "specialize", "compile"]


def compile(graph, input_shapes, fuse=True, precision="float32"):
    """A callable running ``graph`` (optimised once; specialised per batch size on first use);
    ``precision="bfloat16"`` runs its convolutions on bfloat16 operands (``conv2d``'s precision)."""
    return CompiledGraph(prepare(graph), input_shapes, fuse=fuse, precision=precision)
