"""Graph passes: Identity/Dropout removal and BatchNorm folding (need no shapes), then for given
input shapes: shape inference with constant folding, fusion of bias, residual Add and
activations into the conv epilogue, and for batches of several images channel Concats read only
by convs split into the convs' input channels."""
import numpy as np

from .graph import GraphError
from .ops import ACTIVATIONS, OPS, Info, _fused_clamp, activation_params, bn_scale_shift, channel_concat

__all__ = ["simplify", "fold_batchnorm", "infer", "fuse_epilogues", "split_concats", "prepare", "specialize"]


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


#: Per-channel pools: pool(concat(a, b)) == concat(pool(a), pool(b)).
_CHANNEL_POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")


def _splittable_conv(graph, infos, c, m, parts):
    """Whether conv c, reading Concat output m (of `parts` inputs) as its input, gains from running
    as one conv per Concat input: dense, a constant weight, m read once, an epilogue the fused conv
    computes, and the partial outputs it writes and reads back (parts - 1 of them) at most half
    the Concat's bytes it saves copying: SqueezeNet's squeeze convs (128 -> 16 channels) gain, a
    classifier (512 -> 1000) or a DenseNet layer (32 inputs) would lose."""
    w = graph.initializers.get(c.inputs[1]) if len(c.inputs) > 1 else None
    if not (c.op == "Conv" and int(c.attrs.get("group", 1)) == 1 and c.inputs[0] == m and m not in c.inputs[1:]
            and w is not None and np.ndim(w) == 4 and np.shape(w)[1] == infos[m].shape[1]
            and _fused_clamp(c) is not None):
        return False
    return parts <= 4 and 2 * (parts - 1) * np.prod(infos[c.outputs[0]].shape) <= np.prod(infos[m].shape)


def split_concats(graph, infos):
    """Removes channel Concats of several images whose readers are all convs that gain
    (_splittable_conv): conv(concat(x1, ..., xk), W) is conv(x1, W1) + ... + conv(xk, Wk) with W
    split by input channels, each partial conv adding the previous one as its fused residual (the
    first one the original residual, the last one the bias and the activation). A Concat read
    only by a per-channel pool moves past it (pooled parts, then the Concat). At batch 1 the convs write into their Concat's block instead
    (executor.Plan), which is free; at larger batches that block is not contiguous per conv and
    the Concat was a copy of every input (SqueezeNet, batch 8: 3.5 ms of 42). Updates infos."""
    changed = True
    while changed:
        changed = False
        consumers = graph.consumers()
        outputs = set(graph.outputs)
        for cat in graph.nodes:
            if not channel_concat(cat, infos):
                continue
            m = cat.outputs[0]
            if m in outputs or infos[m].shape[0] < 2 or len(cat.inputs) < 2:
                continue
            readers = consumers.get(m, [])
            if len(readers) == 1 and readers[0].op in _CHANNEL_POOLS and readers[0].inputs == [m] \
                    and not any(readers[0].outputs[1:]):
                p = readers[0]
                o = p.outputs[0]
                pooled = []
                for i, x in enumerate(cat.inputs):
                    v = f"{o}:part{i}"
                    infos[v] = Info(infos[o].shape[:1] + infos[x].shape[1:2] + infos[o].shape[2:], infos[o].dtype)
                    pooled.append(p.copy(inputs=[x], outputs=[v], name=f"{p.name}:part{i}"))
                joined = cat.copy(inputs=[q.outputs[0] for q in pooled], outputs=[o], fused=cat.fused + (p.name,))
                graph.nodes = [q for n in graph.nodes if n is not cat
                               for q in (pooled + [joined] if n is p else [n])]
                changed = True
                break
            if not readers or not all(_splittable_conv(graph, infos, c, m, len(cat.inputs)) for c in readers):
                continue
            replace = {}
            for c in readers:
                w = np.asarray(graph.initializers[c.inputs[1]])
                kres, _, _ = _fused_clamp(c)
                res = c.inputs[kres] if kres is not None else ""
                bias = c.inputs[2] if len(c.inputs) > 2 else ""
                acts = tuple(e for e in c.epilogue if e[0] != "add")
                parts, prev, c0 = [], res, 0
                for i, x in enumerate(cat.inputs):
                    c1 = c0 + infos[x].shape[1]
                    wname = f"{c.inputs[1]}:in{c0}-{c1}"
                    if wname not in graph.initializers:
                        graph.initializers[wname] = np.ascontiguousarray(w[:, c0:c1])
                        infos[wname] = Info(graph.initializers[wname].shape, w.dtype, graph.initializers[wname])
                    last = i == len(cat.inputs) - 1
                    out = c.outputs[0] if last else f"{c.outputs[0]}:part{i}"
                    if not last:
                        infos[out] = Info(infos[c.outputs[0]].shape, infos[c.outputs[0]].dtype)
                    ins = [x, wname, bias if last else ""] + ([prev] if prev else [])
                    parts.append(c.copy(inputs=ins, outputs=[out], name=c.name if last else f"{c.name}:part{i}",
                                        epilogue=((("add", 3),) if prev else ()) + (acts if last else ()),
                                        fused=(c.fused + (cat.name,)) if last else ()))
                    prev, c0 = out, c1
                replace[id(c)] = parts
            graph.nodes = [q for n in graph.nodes if n is not cat for q in replace.get(id(n), [n])]
            changed = True
            break
    return graph.prune()  # the unsplit weights


def prepare(graph):
    """The passes that need no shapes (once per loaded model)."""
    graph = simplify(graph.copy().toposort())
    return fold_batchnorm(graph).toposort()


def specialize(graph, input_shapes, fuse=True):
    """The graph for these input shapes: constants folded, epilogues fused; with the infos."""
    g, infos = infer(graph, input_shapes)
    if fuse:
        g = split_concats(fuse_epilogues(g, infos), infos)
    return g, infos
