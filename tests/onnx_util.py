"""Helpers of the ONNX tests: one-node models, and running them on pyconv, onnx's
ReferenceEvaluator and onnxruntime."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import pyconv.onnx as pox

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover
    ort = None


def one_node(op, inputs, consts=(), attrs=None, opset=17, n_out=1, name="node"):
    """A model of the single node ``op``: ``inputs`` (name -> array) are graph inputs, ``consts``
    (name -> array, or None for an absent optional input) initializers, in the order given
    (inputs first)."""
    names, feeds, inits, vis = [], {}, [], []
    for k, v in inputs:
        names.append(k)
        feeds[k] = v
        vis.append(helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)))
    for k, v in consts:
        names.append(k if v is not None else "")
        if v is not None:
            inits.append(numpy_helper.from_array(np.asarray(v), k))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, name=name, **(attrs or {}))
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                  for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    return model, feeds


def run_all(model, feeds, use_ort=True, use_ref=True):
    """(pyconv's outputs, the reference's, onnxruntime's or None where it refuses the model)."""
    m = pox.load(model.SerializeToString())
    got = m(*feeds.values())
    got = list(got) if isinstance(got, tuple) else [got]
    ref = []
    if use_ref:
        try:
            ref = ReferenceEvaluator(model).run(None, feeds)
        except (ValueError, RuntimeError, IndexError):  # the reference's pools fail on some asymmetric pads
            ref = []
    rt = None
    if use_ort and ort is not None:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        try:
            sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            rt = sess.run(None, feeds)
        except Exception:  # onnxruntime does not implement every attribute combination (dilated SAME_*, ...)
            rt = None
    return got, ref, rt


def close(a, b, rtol=1e-5, atol=1e-5, what=""):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    scale = max(1.0, float(np.abs(b).max(initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)


def check(op, inputs, consts=(), attrs=None, opset=17, n_out=1, rtol=1e-5, atol=1e-5, use_ort=True, use_ref=True):
    """pyconv's outputs equal the reference's and onnxruntime's (where it accepts the model)."""
    model, feeds = one_node(op, inputs, consts, attrs, opset, n_out)
    got, ref, rt = run_all(model, feeds, use_ort, use_ref)
    assert ref or rt is not None, "no oracle ran"
    for who, outs in (("ReferenceEvaluator", ref), ("onnxruntime", rt or [])):
        for i, (g, r) in enumerate(zip(got, outs)):
            close(g, r, rtol, atol, f"{op} {attrs} output {i} vs {who}")
    return got
