"""Graph passes: Identity/Dropout removal and BatchNorm folding (need no shapes), then for given
input shapes: shape inference with constant folding, and fusion of bias, residual Add and
activations into the conv epilogue."""
import numpy as np

from .graph import GraphError
from .ops import ACTIVATIONS, OPS, Info, activation_params, bn_scale_shift

__all__ = ["simplify", "fold_batchnorm", "infer", "fuse_epilogues", "prepare", "specialize"]


def _rename(graph, old, new):
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]


def simplify(graph):
    """Remove Identity and (inference) Dropout nodes: their readers read the input instead."""
    keep = []
    outputs = set(graph.outputs)
    for n in graph.nodes:
        if n.op in ("Identity", "Dropout") and n.inputs and n.inputs[0]:
            src, dst = n.inputs[0], n.outputs[0]
            if dst in outputs:
                if src in graph.inputs or src in graph.initializers or src in outputs:
                    keep.append(n.copy(op="Identity", inputs=[src], outputs=[dst]))
                    continue
                # the producer writes the graph output's name directly
                for m in keep:
                    m.outputs = [dst if o == src else o for o in m.outputs]
                _rename(graph, src, dst)
            else:
                _rename(graph, dst, src)
            continue
        keep.append(n)
    graph.nodes = keep
    return graph


def fold_batchnorm(graph):
    """BatchNormalization after a Conv (whose output nothing else reads) becomes the conv's
    weight and bias: w' = w * a, b' = (b - mean) * a + B with a = scale / sqrt(var + eps)."""
    consumers = graph.consumers()
    init = graph.initializers
    producers = graph.producers()
    drop = set()
    for bn in graph.nodes:
        if bn.op != "BatchNormalization" or any(bn.outputs[1:]):
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or conv.epilogue or len(consumers.get(bn.inputs[0], ())) != 1 \
                or bn.inputs[0] in graph.outputs:
            continue
        if not all(i in init for i in bn.inputs[1:5]) or conv.inputs[1] not in init:
            continue
        has_b = len(conv.inputs) > 2 and conv.inputs[2]
        if has_b and conv.inputs[2] not in init:
            continue
        w = init[conv.inputs[1]]
        if w.ndim != 4 or init[bn.inputs[1]].shape != (w.shape[0],):
            continue
        ins = [None] + [Info(init[i].shape, init[i].dtype, init[i]) for i in bn.inputs[1:5]]
        a, shift = bn_scale_shift(bn, ins)
        b = init[conv.inputs[2]].astype(np.float64) if has_b else 0.0
        wname, bname = f"{conv.name}.weight_folded", f"{conv.name}.bias_folded"
        init[wname] = np.ascontiguousarray(w * a.reshape(-1, 1, 1, 1), np.float32)
        init[bname] = (b * a + shift).astype(np.float32)
        conv.inputs = [conv.inputs[0], wname, bname] + conv.inputs[3:]
        conv.outputs = list(bn.outputs[:1])
        conv.fused = conv.fused + (bn.name,)
        drop.add(id(bn))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    return graph.prune()


def infer(graph, input_shapes):
    """Shapes and dtypes of every value for these input shapes (name -> shape), folding every node
    whose inputs are all constants (Shape of a known shape is one) into a constant. Returns
    (graph with the folded nodes removed, infos: name -> Info). GraphError names the node."""
    infos = {}
    for name, (_, dtype) in graph.inputs.items():
        infos[name] = Info(input_shapes[name], dtype)
    for name, v in graph.initializers.items():
        infos[name] = Info(np.shape(v), np.asarray(v).dtype, np.asarray(v))
    keep = []
    for n in graph.nodes:
        ins = [infos[i] if i else None for i in n.inputs]
        infer_fn, build = OPS[n.op]
        try:
            outs = infer_fn(n, ins)
        except GraphError:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise GraphError(f"{n.where()}: {exc} (input shapes {[i.shape if i else None for i in ins]})") from None
        foldable = n.op == "Shape" or all(i is None or i.const is not None for i in ins)
        if foldable and n.op != "Identity":
            try:
                vals = build(n, ins, False)(*[i.const if i is not None else None for i in ins][: _arity(n)])
            except (ValueError, TypeError, IndexError) as exc:
                raise GraphError(f"{n.where()}: {exc}") from None
            vals = vals if isinstance(vals, tuple) else (vals,)
            for o, v, (shape, dtype) in zip(n.outputs, vals, outs):
                v = np.asarray(v)
                infos[o] = Info(v.shape, v.dtype, v)
            continue
        for o, (shape, dtype) in zip(n.outputs, outs):
            if o:
                infos[o] = Info(shape, dtype)
        keep.append(n)
    g = graph.copy()
    g.nodes = [n.copy() for n in keep]
    for name, info in infos.items():
        if info.const is not None and name not in g.initializers:
            g.initializers[name] = info.const
    return g.prune(), infos


def _arity(node):
    # trailing absent optional inputs are not passed
    k = len(node.inputs)
    while k and not node.inputs[k - 1]:
        k -= 1
    return k


def fuse_epilogues(graph, infos):
    """Each Conv absorbs what follows it while its output has one reader and is no graph output:
    a residual Add of a value of the conv output's shape, then activations (ACTIVATIONS). The
    fused conv takes the place of the last node it absorbed."""
    changed = True
    while changed:
        changed = False
        consumers = graph.consumers()
        outputs = set(graph.outputs)
        for pos, c in enumerate(graph.nodes):
            if c.op != "Conv" or len(c.inputs) < 2:
                continue
            y = c.outputs[0]
            readers = consumers.get(y, [])
            if y in outputs or len(readers) != 1:
                continue
            n = readers[0]
            step = None
            if n.op in ("Add", "Sum") and len(n.inputs) == 2 and n.inputs.count(y) == 1:
                r = n.inputs[1] if n.inputs[0] == y else n.inputs[0]
                if infos[r].shape == infos[y].shape and infos[r].dtype == infos[y].dtype:
                    inputs = (c.inputs + [""] * 3)[:3] + c.inputs[3:] + [r]
                    step = ("add", len(inputs) - 1)
            elif n.op in ACTIVATIONS:
                try:
                    params = activation_params(n, [infos[i] if i else None for i in n.inputs])
                except GraphError:
                    params = None
                if params is not None:
                    inputs, step = c.inputs, (n.op, params)
            if step is None:
                continue
            fused = c.copy(inputs=inputs, outputs=list(n.outputs), epilogue=c.epilogue + (step,),
                           fused=c.fused + (n.name,))
            graph.nodes = [fused if m is n else m for m in graph.nodes if m is not c]
            changed = True
            break
    return graph


def prepare(graph):
    """The passes that need no shapes (once per loaded model)."""
    graph = simplify(graph.copy().toposort())
    return fold_batchnorm(graph).toposort()


def specialize(graph, input_shapes, fuse=True):
    """The graph for these input shapes: constants folded, epilogues fused; with the infos."""
    g, infos = infer(graph, input_shapes)
    if fuse:
        g = fuse_epilogues(g, infos)
    return g, infos
