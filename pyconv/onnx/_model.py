"""``load()`` and the :class:`Model` it returns: the ONNX graph, optimised once, as a callable."""
import time

from ..inference import CompiledGraph, prepare
from ..inference.executor import PRECISIONS
from ._load import read_model, to_graph

__all__ = ["Model", "load"]


def load(source, input_shapes=None, *, fuse=True, precision="float32"):
    """Read, check and optimise an ONNX model.

    Args:
        source: a path, the file's bytes, or an ``onnx.ModelProto``.
        input_shapes: ``{input name: shape}`` for inputs whose declared shape has free dimensions
            other than the batch size (a free batch size is taken as 1 at load; any batch size
            runs later).
        fuse: fuse bias, residual Add and activations into the conv epilogues (BatchNorm is
            folded either way). ``fuse=False`` keeps them as separate nodes (the tests compare).
        precision: ``"float32"`` or ``"bfloat16"``: the convolutions and fully-connected layers
            (Gemm with a constant weight) that run on AMX tiles take bfloat16-rounded inputs and
            weights with float32 accumulation (weights packed here, once; see
            ``pyconv.functional.conv2d``); depthwise and thin grouped convs, every conv on a CPU
            without AMX, and all other ops stay float32.

    Raises:
        pyconv.onnx.UnsupportedError: unsupported operators, dtypes or attribute values, all of
            them, each with its node's name and op type.
        pyconv.onnx.GraphError: a malformed model, a missing initializer, external data outside
            the model's directory, or shapes that do not fit (naming the node and the shapes).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    t0 = time.perf_counter()
    proto, base = read_model(source)
    graph, shapes = to_graph(proto, base, input_shapes)
    t1 = time.perf_counter()
    model = Model(CompiledGraph(prepare(graph), shapes, fuse=fuse, precision=precision), proto)
    model.load_seconds = (t1 - t0, time.perf_counter() - t1)
    return model


class Model:
    """An ONNX model ready to run: ``model(x, ...)`` takes one float32 array per input (any batch
    size; the other dimensions as declared) and returns the output array (a tuple for several).

    Attributes: ``inputs`` (``[(name, declared shape)]``), ``outputs`` (names), ``opset``,
    ``producer``, ``load_seconds`` (parse, optimise), and :meth:`summary`."""

    def __init__(self, compiled, proto):
        self._compiled = compiled
        self.inputs = [(k, compiled.input_shapes[k]) for k in compiled.input_names]
        self.outputs = list(compiled.graph.outputs)
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.producer = f"{proto.producer_name} {proto.producer_version}".strip()
        self.name = proto.graph.name
        self.num_nodes = len(proto.graph.node)

    def __call__(self, *inputs):
        return self._compiled(*inputs)

    def plan(self, batch=None):
        """The executor plan (nodes after optimisation, buffer plan) for this batch size."""
        shapes = tuple((batch or s[0],) + tuple(s[1:]) for _, s in self.inputs)
        return self._compiled.plan_for(shapes)

    @property
    def graph(self):
        """The optimised graph for the declared input shapes."""
        return self.plan().graph

    def summary(self, batch=None):
        return Summary(self, self.plan(batch))

    def __repr__(self):
        ins = ", ".join(f"{k}{tuple(s)}" for k, s in self.inputs)
        return f"<pyconv.onnx.Model {self.name!r} ({ins}) -> {', '.join(self.outputs)}; {len(self.graph.nodes)} ops>"


def _fmt_flops(f):
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if f >= div:
            return f"{f / div:.2f}{unit}"
    return str(int(f))


class Summary:
    """Per op (after optimisation): output volume, parameters, FLOPs, the algorithm pyconv runs
    and what was fused; the peak activation memory of the buffer plan."""

    def __init__(self, model, plan):
        self.model, self.plan = model, plan
        self.rows = plan.rows()
        self.params = plan.graph.parameters()
        self.flops = sum(r["flops"] for r in self.rows)
        self.peak_bytes, self.all_bytes, self.weight_bytes = plan.peak_bytes, plan.all_bytes, plan.weight_bytes

    def __str__(self):
        head = ("op", "name", "output", "params", "FLOPs", "runs", "fused")
        lines = []
        for r in self.rows:
            fused = ", ".join(r["fused"]) if r["fused"] else ""
            runs = r["algorithm"] or ("in place" if r["inplace"] else "")
            if r["epilogue"]:
                runs += " + " + " + ".join(r["epilogue"])
            lines.append((r["op"], r["name"][:40], "x".join(map(str, r["output"])), f"{r['params']:,}",
                          _fmt_flops(r["flops"]), runs, fused[:60]))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        m = self.model
        out.append("")
        out.append(f"{len(self.rows)} ops after optimisation ({m.num_nodes} in the file, opset {m.opset}); "
                   f"{self.params:,} parameters ({self.weight_bytes / 2**20:.1f} MiB); {_fmt_flops(self.flops)} FLOPs")
        out.append(f"activation memory: peak {self.peak_bytes / 2**20:.2f} MiB with buffers freed and reused by "
                   f"liveness (at {self.plan.peak_at}); {self.all_bytes / 2**20:.2f} MiB if every value were kept; "
                   f"conv outputs in a {self.plan.arena_bytes / 2**20:.2f} MiB arena kept between runs")
        return "\n".join(out)

    def brief(self):
        return f"{len(self.rows)} ops, {self.params:,} params, {_fmt_flops(self.flops)} FLOPs"

