"""``optimize(model)``: a torch model in eval mode as pyconv's fused inference graph.

``torch.fx`` traces the model; each traced call becomes a node of :mod:`pyconv.inference` (the
graph ``pyconv.onnx.load`` builds, in ONNX's op vocabulary), so the same passes run: BatchNorm
folded into the conv before it, bias + residual add + activation fused into the conv's epilogue,
Dropout/Identity removed, buffers planned by liveness. A call the graph has no op for (a custom
module, an unusual function) stays torch's: it runs as one node calling that module or function,
so every model that traces runs, and ``summary()`` says which nodes stayed torch's. The graph is
specialised per input shape on first use. The original model is not changed (weights are copied
at optimisation time: optimise again after changing them).
"""
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import inference
from ..inference import ops as _ops
from ..inference.graph import Graph, GraphError, Node

__all__ = ["optimize", "OptimizedModule"]

TORCH_OP = "PyTorch"  # a node running a torch module or function on numpy arrays


def _infer_torch(node, ins):
    fn = node.attrs["fn"]
    with torch.no_grad():
        out = fn(*[torch.zeros(i.shape, dtype=_torch_dtype(i.dtype)) for i in ins])
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [(tuple(o.shape), o.numpy().dtype) for o in outs]


def _build_torch(node, ins, inplace):
    fn = node.attrs["fn"]

    def run(*xs):
        with torch.no_grad():
            out = fn(*[torch.from_numpy(x) for x in xs])
        if isinstance(out, (tuple, list)):
            return tuple(o.contiguous().numpy() for o in out)
        return out.contiguous().numpy()
    return run


_ops.OPS.setdefault(TORCH_OP, (_infer_torch, _build_torch))


def _torch_dtype(dtype):
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pads(p):
    ph, pw = _pair(p)
    return [ph, pw, ph, pw]


class _Builder:
    def __init__(self, gm):
        self.gm = gm
        self.nodes, self.inputs, self.outputs, self.init = [], {}, [], {}
        self.kept = []  # names of nodes left to torch
        self.counter = 0

    def const(self, value, hint):
        self.counter += 1
        name = f"{hint}_{self.counter}"
        self.init[name] = np.ascontiguousarray(value)
        return name

    def param(self, t, hint):
        return self.const(t.detach().cpu().numpy().copy(), hint)

    def emit(self, op, inputs, out, attrs=None, name=""):
        self.nodes.append(Node(op, inputs, [out], attrs, name=name))

    def torch_call(self, fx_node, fn, tensor_args, out):
        self.kept.append(fx_node.name)
        self.emit(TORCH_OP, tensor_args, out, {"fn": fn}, name=fx_node.name)

    # ------------------------------------------------------------------ modules
    def module(self, n, m, args, out):
        x = args[0] if args else None
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            ins = [x, self.param(m.weight, n.name + ".weight")]
            if m.bias is not None:
                ins.append(self.param(m.bias, n.name + ".bias"))
            self.emit("Conv", ins, out, dict(kernel_shape=list(m.kernel_size), strides=list(m.stride),
                                             pads=_pads(m.padding), dilations=list(m.dilation), group=m.groups),
                      name=n.name)
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.running_mean is not None:
            c = m.num_features
            scale = m.weight if m.weight is not None else torch.ones(c)
            shift = m.bias if m.bias is not None else torch.zeros(c)
            self.emit("BatchNormalization", [x, self.param(scale, n.name + ".scale"),
                                             self.param(shift, n.name + ".shift"),
                                             self.param(m.running_mean, n.name + ".mean"),
                                             self.param(m.running_var, n.name + ".var")], out,
                      dict(epsilon=float(m.eps)), name=n.name)
        elif isinstance(m, nn.ReLU):
            self.emit("Relu", [x], out, name=n.name)
        elif isinstance(m, (nn.ReLU6, nn.Hardtanh)):
            lo, hi = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (m.min_val, m.max_val)
            self.emit("Clip", [x, self.const(np.float32(lo), "min"), self.const(np.float32(hi), "max")], out,
                      name=n.name)
        elif isinstance(m, nn.LeakyReLU):
            self.emit("LeakyRelu", [x], out, dict(alpha=float(m.negative_slope)), name=n.name)
        elif isinstance(m, nn.Sigmoid):
            self.emit("Sigmoid", [x], out, name=n.name)
        elif isinstance(m, nn.Tanh):
            self.emit("Tanh", [x], out, name=n.name)
        elif isinstance(m, nn.Hardswish):
            self.emit("HardSwish", [x], out, name=n.name)
        elif isinstance(m, nn.Hardsigmoid):
            self.emit("HardSigmoid", [x], out, dict(alpha=1 / 6, beta=0.5), name=n.name)
        elif isinstance(m, nn.SiLU):
            self.silu(x, out, n.name)
        elif isinstance(m, nn.MaxPool2d) and not m.return_indices:
            self.maxpool(x, out, n.name, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        elif isinstance(m, nn.AvgPool2d) and m.divisor_override is None:
            self.avgpool(x, out, n.name, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and _pair(m.output_size) == (1, 1):
            self.emit("GlobalAveragePool", [x], out, name=n.name)
        elif isinstance(m, nn.AdaptiveMaxPool2d) and _pair(m.output_size) == (1, 1) and not m.return_indices:
            self.emit("GlobalMaxPool", [x], out, name=n.name)
        elif isinstance(m, nn.Linear):
            ins = [x, self.param(m.weight, n.name + ".weight")]
            if m.bias is not None:
                ins.append(self.param(m.bias, n.name + ".bias"))
            self.emit("Gemm", ins, out, dict(transB=1), name=n.name)
        elif isinstance(m, nn.Flatten) and m.end_dim == -1:
            self.emit("Flatten", [x], out, dict(axis=m.start_dim), name=n.name)
        elif isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Identity)):
            self.emit("Identity", [x], out, name=n.name)
        else:
            return False
        return True

    def silu(self, x, out, name):
        s = f"{name}.sigmoid"
        self.emit("Sigmoid", [x], s, name=s)
        self.emit("Mul", [x, s], out, name=name)

    def maxpool(self, x, out, name, k, s, p, d, ceil):
        k = _pair(k)
        self.emit("MaxPool", [x], out, dict(kernel_shape=list(k), strides=list(_pair(s if s else k)), pads=_pads(p),
                                            dilations=list(_pair(d)), ceil_mode=int(bool(ceil))), name=name)

    def avgpool(self, x, out, name, k, s, p, ceil, include_pad):
        k = _pair(k)
        self.emit("AveragePool", [x], out, dict(kernel_shape=list(k), strides=list(_pair(s if s else k)),
                                                pads=_pads(p), ceil_mode=int(bool(ceil)),
                                                count_include_pad=int(bool(include_pad))), name=name)

    # ------------------------------------------------------------------ functions and methods
    def function(self, n, fn, args, kwargs, out):
        a = list(args)
        if fn in (operator.add, operator.iadd, torch.add) and len(a) == 2 and kwargs.get("alpha", 1) == 1 \
                and all(isinstance(v, str) for v in a):
            self.emit("Add", a, out, name=n.name)
        elif fn in (operator.mul, operator.imul, torch.mul) and len(a) == 2 and all(isinstance(v, str) for v in a):
            self.emit("Mul", a, out, name=n.name)
        elif fn in (F.relu, torch.relu) and isinstance(a[0], str):
            self.emit("Relu", a[:1], out, name=n.name)
        elif fn in (torch.tanh, F.tanh) and isinstance(a[0], str):
            self.emit("Tanh", a[:1], out, name=n.name)
        elif fn in (torch.clamp, torch.clip) and isinstance(a[0], str) and len(a) + len(kwargs) == 3 and \
                all(isinstance(v, (int, float)) for v in list(a[1:]) + list(kwargs.values())):
            lo = a[1] if len(a) > 1 else kwargs.get("min")
            hi = a[2] if len(a) > 2 else kwargs.get("max")
            self.emit("Clip", [a[0], self.const(np.float32(lo), "min"), self.const(np.float32(hi), "max")], out,
                      name=n.name)
        elif fn in (torch.sigmoid, F.sigmoid) and isinstance(a[0], str):
            self.emit("Sigmoid", a[:1], out, name=n.name)
        elif fn is F.silu and isinstance(a[0], str):
            self.silu(a[0], out, n.name)
        elif fn is F.hardswish and isinstance(a[0], str):
            self.emit("HardSwish", a[:1], out, name=n.name)
        elif fn is F.relu6 and isinstance(a[0], str):
            self.emit("Clip", [a[0], self.const(np.float32(0), "min"), self.const(np.float32(6), "max")], out,
                      name=n.name)
        elif fn is torch.flatten and isinstance(a[0], str):
            start = a[1] if len(a) > 1 else kwargs.get("start_dim", 0)
            end = a[2] if len(a) > 2 else kwargs.get("end_dim", -1)
            if end != -1:
                return False
            self.emit("Flatten", a[:1], out, dict(axis=start), name=n.name)
        elif fn is torch.cat and isinstance(a[0], (list, tuple)) and all(isinstance(v, str) for v in a[0]):
            dim = a[1] if len(a) > 1 else kwargs.get("dim", 0)
            self.nodes.append(Node("Concat", list(a[0]), [out], dict(axis=dim), name=n.name))
        elif fn is F.adaptive_avg_pool2d and isinstance(a[0], str) and \
                _pair(a[1] if len(a) > 1 else kwargs["output_size"]) == (1, 1):
            self.emit("GlobalAveragePool", a[:1], out, name=n.name)
        else:
            return False
        return True

    def method(self, n, name, args, out, sizes):
        a = list(args)
        if name == "relu" and len(a) == 1:
            self.emit("Relu", a, out, name=n.name)
        elif name in ("view", "reshape", "flatten") and isinstance(a[0], str):
            dims = a[1:]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = list(dims[0])
            if name == "flatten" and (dims in ([1], [1, -1])):
                self.emit("Flatten", a[:1], out, dict(axis=1), name=n.name)
            elif name != "flatten" and len(dims) == 2 and dims[1] == -1 and sizes.get(dims[0]) == (a[0], 0):
                self.emit("Flatten", a[:1], out, dict(axis=1), name=n.name)  # x.view(x.size(0), -1)
            else:
                return False
        else:
            return False
        return True


def _trace(model):
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError on data-dependent control flow)
        raise ValueError(f"optimize: torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc!r}); run the model as it is, or "
                         "pyconv.torch.convert it for pyconv's kernels without the fused graph") from None


def _build(model):
    gm = _trace(model)
    b = _Builder(gm)
    env_ok = {}  # fx node name -> True when it is a tensor value of the graph
    sizes = {}  # fx node name -> (tensor value, dim) for x.size(dim) nodes
    modules = dict(gm.named_modules())
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            b.inputs[n.name] = (None, np.float32)
            env_ok[n.name] = True
            continue
        if n.op == "output":
            res = n.args[0]
            res = list(res) if isinstance(res, (tuple, list)) else [res]
            if not all(isinstance(r, fx.Node) and r.name in env_ok for r in res):
                raise ValueError("optimize: the model must return a tensor or a tuple of tensors")
            b.outputs = [r.name for r in res]
            continue
        if n.op == "get_attr":
            t = _fetch(gm, n.target)
            if isinstance(t, torch.Tensor):
                b.init[n.name] = t.detach().cpu().numpy().copy()
                env_ok[n.name] = True
            continue
        if n.op == "call_method" and n.target == "size" and len(n.args) == 2 and isinstance(n.args[1], int):
            sizes[n.name] = (n.args[0].name, n.args[1])
            continue
        args = fx.node.map_arg(n.args, lambda v: v.name)
        kwargs = fx.node.map_arg(n.kwargs, lambda v: v.name)
        done = False
        if n.op == "call_module":
            done = b.module(n, modules[n.target], args, n.name)
        elif n.op == "call_function":
            done = b.function(n, n.target, args, kwargs, n.name)
        elif n.op == "call_method":
            done = b.method(n, n.target, args, n.name, sizes)
        if not done:
            _keep_torch(b, gm, modules, n, env_ok)
        env_ok[n.name] = True
    return Graph(b.nodes, b.inputs, b.outputs, b.init, name=type(model).__name__), b.kept


def _fetch(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _keep_torch(b, gm, modules, n, env_ok):
    """A call with no graph op runs as torch: its tensor arguments become the node's inputs."""
    tensors = []

    def slot(v):
        if isinstance(v, fx.Node):
            if v.name not in env_ok:
                raise ValueError(f"optimize: {n.name} ({n.op} {n.target}) reads {v.name}, which is not a tensor of "
                                 "the graph (shape arithmetic on a traced size is not supported)")
            tensors.append(v.name)
            return _Slot(len(tensors) - 1)
        return v
    args = fx.node.map_aggregate(n.args, slot)
    kwargs = fx.node.map_aggregate(n.kwargs, slot)
    if n.op == "call_module":
        target = modules[n.target]
    elif n.op == "call_function":
        target = n.target
    else:
        name = n.target
        target = lambda self, *a, **k: getattr(self, name)(*a, **k)  # noqa: E731

    def fn(*xs):
        fill = lambda v: xs[v.k] if isinstance(v, _Slot) else v  # noqa: E731
        return target(*fx.node.map_aggregate(args, fill), **fx.node.map_aggregate(kwargs, fill))
    b.torch_call(n, fn, tensors, n.name)


class _Slot:
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k


class OptimizedModule(nn.Module):
    """The fused inference graph of a torch model, called like it (CPU float32 tensors in and out).

    ``graph`` is the :class:`pyconv.inference.Graph` after the shape-free passes; ``summary(x)``
    gives per node the op, output shape, algorithm and what was fused, for ``x``'s shape.
    """

    def __init__(self, graph, kept, source, precision="float32"):
        super().__init__()
        self.graph, self.kept_in_torch, self.source, self.precision = graph, tuple(kept), source, precision
        self._compiled = {}

    def _plan(self, arrays):
        key = tuple(a.shape[1:] for a in arrays)
        cg = self._compiled.get(key)
        if cg is None:
            cg = inference.CompiledGraph(self.graph, {k: a.shape for k, a in zip(self.graph.inputs, arrays)},
                                         precision=self.precision)
            self._compiled[key] = cg
        return cg

    def _arrays(self, xs):
        out = []
        for k, x in zip(self.graph.inputs, xs):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"input {k!r} must be a torch.Tensor, got {type(x).__name__}")
            if x.device.type != "cpu" or x.dtype != torch.float32:
                raise ValueError(f"input {k!r} must be a CPU float32 tensor, got {x.dtype} on {x.device}")
            out.append(x.detach().contiguous().numpy())
        if len(xs) != len(self.graph.inputs):
            raise TypeError(f"the model takes {len(self.graph.inputs)} input(s), got {len(xs)}")
        return out

    def forward(self, *xs):
        arrays = self._arrays(xs)
        ys = self._plan(arrays)(*arrays)
        if isinstance(ys, tuple):
            return tuple(torch.from_numpy(y) for y in ys)
        return torch.from_numpy(ys)

    def summary(self, *xs):
        arrays = self._arrays(xs)
        cg = self._plan(arrays)
        return cg.plan_for(tuple(a.shape for a in arrays)).rows()

    def extra_repr(self):
        kept = f", {len(self.kept_in_torch)} node(s) left to torch" if self.kept_in_torch else ""
        prec = f", precision={self.precision}" if self.precision != "float32" else ""
        return f"{self.source}: {len(self.graph.nodes)} nodes{kept}{prec}"


def optimize(model, *, precision="float32"):
    """``model`` (an ``nn.Module`` in eval mode) as pyconv's fused inference graph.

    ``precision="bfloat16"``: the convolutions and fully-connected layers that run on AMX tiles
    take bfloat16-rounded inputs and weights with float32 accumulation (weights packed once per
    input shape; see ``pyconv.functional.conv2d``); depthwise and thin grouped convs, every conv
    on a CPU without AMX, and all other ops stay float32.

    Returns an :class:`OptimizedModule`: call it with CPU float32 tensors as the model. Raises
    ``ValueError`` for a model in training mode (BatchNorm folding and Dropout removal are
    inference semantics) or one torch.fx cannot trace.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if precision not in inference.PRECISIONS:
        raise ValueError(f"precision must be one of {inference.PRECISIONS}, got {precision!r}")
    if model.training:
        raise ValueError("optimize is for inference: call model.eval() first (BatchNorm is folded with its running "
                         "statistics and Dropout removed)")
    graph, kept = _build(model)
    try:
        graph = inference.prepare(graph)
    except GraphError as exc:
        raise ValueError(f"optimize: {exc}") from None
    return OptimizedModule(graph, kept, type(model).__name__, precision)
