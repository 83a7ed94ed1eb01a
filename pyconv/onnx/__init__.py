"""ONNX front-end: ``load()`` an ONNX model into pyconv's inference graph, ``export()`` a pyconv.nn
model to ONNX.

    import pyconv.onnx as pox
    model = pox.load("resnet18.onnx")      # parse, check, optimise once
    y = model(x)                           # numpy float32 NCHW in, numpy out
    pox.export(net, "net.onnx", input_shape=(1, 3, 32, 32))

Needs the ``onnx`` package (``pip install 'pyconv[onnx]'``); ``import pyconv`` does not. A model
file is data: nothing in it is executed, and external tensor data is read only from the model's
own directory.
"""
try:
    import onnx  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without onnx
    raise ImportError("pyconv.onnx needs the onnx package: pip install 'pyconv[onnx]' (or onnx itself)") from exc

from ..inference import GraphError, UnsupportedError
from ._export import export
from ._model import Model, load

__all__ = ["load", "export", "Model", "GraphError", "UnsupportedError"]
