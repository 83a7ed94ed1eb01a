"""Running a specialised graph: slots instead of names, a buffer plan by liveness, one short loop.

:class:`Plan` turns the nodes into ``(function, input slots, output slot, slots to free, arena
index)`` steps. A value's slot is cleared after its last reader, so numpy frees (or reuses) its
memory; ops that may (``ops.INPLACE``) write into their input's buffer when nothing later reads
it, and the conv epilogue always works in place on the conv's output. Views (Reshape, Flatten,
...) share their input's buffer, which stays alive while any of them does. Convs and Concat write
into arena blocks the plan owns (``Plan._plan_arena``); at batch 1 the convs feeding a channel
Concat write into its block directly.
"""
import time

import numpy as np

from .. import _core
from . import nchwc
from .graph import Graph, GraphError
from .ops import (BF16_BUILDERS, FRESH, INPLACE, OPS, POOLS_NCHWC, VIEWS, build_conv_nchwc, build_expand_dw,
                  build_pool_nchwc, bf16_native, bf16_preferred, channel_concat, conv_algorithm, conv_core_args,
                  nchwc_eligible)

#: Accepted values of ``precision=`` (CompiledGraph, pyconv.onnx.load, pyconv.torch.optimize).
PRECISIONS = ("float32", "bfloat16")

__all__ = ["Plan", "CompiledGraph"]


def _written(*inputs, out):
    """A Concat whose inputs were written into its output by their convs."""
    return out


def _nbytes(info):
    return int(np.prod(info.shape, dtype=np.int64)) * info.dtype.itemsize


def blocked_values(graph, infos, precision="float32"):
    """(values kept in the blocked layout, nodes run by the blocked kernels, by output name). A
    value is blocked when an eligible conv (ops.nchwc_eligible; at precision="bfloat16" not one
    that ops.bf16_preferred gives the bfloat16 kernel) or a channel Concat of blocked values makes
    it, it is not a graph output, and every reader is an eligible conv taking it as its input or
    as the fused residual of a blocked output, a GlobalAveragePool, or a Concat whose output is
    blocked; an eligible conv runs blocked when its input or its output is, a pool when its input
    is, a Concat when its output is. A Concat's inputs before the last need whole blocks of
    channels (a multiple of 16): the blocked Concat is then the concatenation of the blocks."""
    ins = {n.name: [infos[i] if i else None for i in n.inputs] for n in graph.nodes}
    elig = {n.outputs[0]: n for n in graph.nodes if n.op == "Conv" and nchwc_eligible(n, ins[n.name])
            and not (precision == "bfloat16" and bf16_preferred(n, ins[n.name]))}
    pools = {n.outputs[0]: n for n in graph.nodes if n.op in POOLS_NCHWC and len(ins[n.name][0].shape) == 4
             and ins[n.name][0].dtype == np.float32 and not any(n.outputs[1:])}
    concats = {n.outputs[0]: n for n in graph.nodes if channel_concat(n, infos)
               and infos[n.outputs[0]].dtype == np.float32
               and all(infos[i].shape[1] % nchwc.B == 0 for i in n.inputs[:-1])}
    consumers = graph.consumers()
    outputs = set(graph.outputs)

    def role(c, v):
        """How c reads v: "x", "res", "x+res" or None (as weight or bias, or c cannot)."""
        if c.outputs[0] in pools:
            return "x" if c.inputs == [v] else None
        if c.outputs[0] in concats:
            return "x"
        if c.outputs[0] not in elig:
            return None
        adds = [e[1] for e in c.epilogue if e[0] == "add"]
        at = {i for i, name in enumerate(c.inputs) if name == v}
        if not at or not at <= {0, *adds}:
            return None
        return "+".join(r for r, i in (("x", 0), ("res", adds[0] if adds else -1)) if i in at)

    blocked = {v for v in list(elig) + list(concats)
               if v not in outputs and consumers.get(v) and all(role(c, v) for c in consumers[v])}
    residual = {v: [n.inputs[e[1]] for e in n.epilogue if e[0] == "add"] for v, n in elig.items()}
    changed = True
    while changed:  # a fused residual is in its conv's output layout, a Concat's inputs in its;
        # a conv reordering 16 or more NCHW channels only for a pool gains nothing (SqueezeNet's classifier)
        drop = {v for v in blocked if any(r not in blocked for r in residual.get(v, ()))
                or (v in elig and elig[v].inputs[0] not in blocked and infos[elig[v].inputs[0]].shape[1] >= 16
                    and all(c.outputs[0] in pools for c in consumers[v]))
                or (v in concats and any(i not in blocked for i in concats[v].inputs))
                or any(("res" in role(c, v) or c.outputs[0] in concats) and c.outputs[0] not in blocked
                       for c in consumers[v])}
        blocked -= drop
        changed = bool(drop)
    run = {v for v, n in elig.items() if v in blocked or n.inputs[0] in blocked}
    run |= {v for v, n in pools.items() if n.inputs[0] in blocked}
    run |= {v for v in concats if v in blocked}
    return blocked, run


def fuse_expansions(graph, infos, blocked, convs):
    """(graph with each 1x1 expansion fused into the depthwise conv that alone reads its blocked
    output, {depthwise output: (expansion node, its input infos)}). The fused step never stores
    the expansion (inference.ops.build_expand_dw); planes narrower than 14 pixels stay unfused
    (rows of one tile gain nothing: RESULTS.md section 11)."""
    consumers = graph.consumers()
    producers = graph.producers()
    expand, drop = {}, set()
    for b in graph.nodes:
        if b.op != "Conv" or b.outputs[0] not in convs or int(b.attrs.get("group", 1)) == 1:
            continue
        e = b.inputs[0]
        a = producers.get(e)
        if a is None or a.op != "Conv" or e not in blocked or len(consumers[e]) != 1 or b.inputs.count(e) != 1:
            continue
        ins = [infos[i] if i else None for i in a.inputs]
        strides, pads, dil, g = conv_core_args(a, ins)
        if (g != 1 or ins[1].shape[2:] != (1, 1) or strides != (1, 1) or any(pads) or dil != (1, 1)
                or any(x[0] == "add" for x in a.epilogue) or infos[e].shape[3] < 14):
            continue
        expand[b.outputs[0]] = (a, ins)
        drop.add(a.name)
    if not expand:
        return graph, expand
    nodes = []
    for n in graph.nodes:
        if n.name in drop:
            continue
        if n.outputs[0] in expand:
            a = expand[n.outputs[0]][0]
            n = n.copy(inputs=[a.inputs[0]] + n.inputs[1:], fused=a.fused + (a.name,) + n.fused)
        nodes.append(n)
    return Graph(nodes, graph.inputs, graph.outputs, graph.initializers, graph.name), expand


def _aligned_bytes(n):
    """n bytes starting on a 64-byte boundary: a blocked pixel's 16 floats are then one cache
    line, never two (the depthwise kernel loses 1.15-1.3x on misaligned planes)."""
    buf = np.empty(n + 64, np.uint8)
    k = -buf.ctypes.data % 64
    return buf[k:k + n]


class Plan:
    def __init__(self, graph, infos, precision="float32"):
        self.blocked, self.nchwc = blocked_values(graph, infos, precision)
        graph, self.expand = fuse_expansions(graph, infos, self.blocked, self.nchwc)
        self.graph, self.infos, self.precision = graph, infos, precision
        slot = {"": 0}  # absent optional inputs read slot 0, which stays None
        for name in list(graph.inputs) + list(graph.initializers):
            slot.setdefault(name, len(slot))
        for n in graph.nodes:
            for o in n.outputs:
                if o:
                    slot.setdefault(o, len(slot))
        self.slot = slot
        self.env = [None] * len(slot)
        for name, v in graph.initializers.items():
            self.env[slot[name]] = np.require(v, requirements="C")  # (ascontiguousarray makes 0-d 1-d)
        self.input_slots = [slot[i] for i in graph.inputs]
        self.output_slots = [slot[o] for o in graph.outputs]
        last = {}
        for step, n in enumerate(graph.nodes):
            for i in n.inputs:
                if i:
                    last[i] = step
        keep = set(graph.outputs)
        # buffers: a view's value shares its source's buffer; inputs and constants are read-only
        buf = {name: name for name in list(graph.inputs) + list(graph.initializers)}
        external = set(buf)
        buf_last = {b: last.get(b, -1) for b in buf}  # the last step reading any value of the buffer
        kept = {buf[o] for o in keep if o in buf}
        self.steps, self.inplace, self.multi = [], [], {}
        live = {name: _nbytes(infos[name]) for name in graph.inputs}
        total = sum(live.values())
        peak, peak_at = total, None
        for step, n in enumerate(graph.nodes):
            ins = [infos[i] if i else None for i in n.inputs]
            arity = len(n.inputs)
            while arity and not n.inputs[arity - 1]:
                arity -= 1
            src = n.inputs[0] if n.inputs else ""
            b0 = buf.get(src)
            can = (n.op in INPLACE and b0 is not None and b0 not in external and b0 not in kept
                   and buf_last[b0] <= step and infos[n.outputs[0]].shape == infos[src].shape
                   and infos[n.outputs[0]].dtype == infos[src].dtype and n.inputs.count(src) == 1)
            build = (BF16_BUILDERS.get(n.op) if precision == "bfloat16" else None) or OPS[n.op][1]
            if n.outputs[0] in self.expand:
                a, a_ins = self.expand[n.outputs[0]]
                fn = build_expand_dw(a, a_ins, infos[a.outputs[0]], n, ins, n.outputs[0] in self.blocked)
            elif n.op == "Conv" and n.outputs[0] in self.nchwc:
                fn = build_conv_nchwc(n, ins, n.inputs[0] in self.blocked, n.outputs[0] in self.blocked)
            elif n.outputs[0] in self.nchwc and n.op != "Concat":  # a blocked Concat joins blocks: as NCHW
                fn = build_pool_nchwc(n, ins, n.outputs[0] in self.blocked)
            else:
                fn = build(n, ins, can)
            self.inplace.append(can)
            for o in n.outputs:
                if not o:
                    continue
                b = b0 if (can or (n.op in VIEWS and b0 is not None)) else o
                buf[o] = b
                if b == o:
                    live[o] = self._bytes(o)
                    total += live[o]
                    buf_last[o] = -1
                buf_last[b] = max(buf_last[b], last.get(o, len(graph.nodes)))
                if o in keep:
                    kept.add(b)
            if total > peak:
                peak, peak_at = total, n.name
            for b in [b for b in live if b not in kept and b not in external and buf_last[b] <= step]:
                total -= live.pop(b)
            free = tuple(slot[i] for i in set(x for x in n.inputs if x)
                         if last.get(i) == step and i not in keep and i not in graph.initializers)
            if len(n.outputs) == 1:
                out = slot[n.outputs[0]]
            else:
                out = -1 - len(self.multi)
                self.multi[out] = [slot[o] if o else None for o in n.outputs]
            self.steps.append((fn, tuple(slot[i] for i in n.inputs[:arity]), out, free, -1))
        self.peak_bytes, self.peak_at = peak, peak_at
        self._arenas, self._arena_views = [], []
        self._plan_arena(last)
        self.all_bytes = sum(_nbytes(infos[o]) for n in graph.nodes for o in n.outputs if o) + \
            sum(_nbytes(infos[i]) for i in graph.inputs)
        self.weight_bytes = sum(np.asarray(v).nbytes for v in graph.initializers.values())

    def _shape(self, name):
        """The shape a value's array has: blocked (N, C/16, H, W, 16) or its logical shape."""
        shape = self.infos[name].shape
        return nchwc.blocked_shape(shape) if name in self.blocked else shape

    def _bytes(self, name):
        return int(np.prod(self._shape(name), dtype=np.int64)) * self.infos[name].dtype.itemsize

    def _plan_arena(self, last):
        """Assigns the outputs of steps that take ``out=`` (the convs, Concat) to blocks of an arena
        by liveness: a block is reused once the last reader of every value that may view it has
        run (any op outside ops.FRESH may return a view of its inputs). Each run borrows one arena
        from a pool (concurrent runs from several threads each get their own) instead of allocating
        fresh outputs, which when large are mmap'd and page-faulted in anew on every call. Graph
        outputs, and whatever they may view, are always fresh arrays."""
        nodes = self.graph.nodes
        cand = {n.outputs[0]: step for step, n in enumerate(nodes)
                if len(n.outputs) == 1 and n.outputs[0] and getattr(self.steps[step][0], "takes_out", False)}
        alias = {}  # value -> the candidates it may view
        end = {o: last.get(o, cand[o]) for o in cand}
        for step, n in enumerate(nodes):
            for o in n.outputs:
                if not o:
                    continue
                if o in cand:
                    alias[o] = {o}
                elif n.op in FRESH:
                    alias[o] = set()
                else:
                    alias[o] = set().union(*(alias.get(i, ()) for i in n.inputs if i))
                for c in alias[o]:
                    end[c] = max(end[c], last.get(o, step))
        for o in self.graph.outputs:
            for c in alias.get(o, ()):
                cand.pop(c, None)
        slices = self._concat_slices(cand)
        sizes, free_blocks, owner = [], [], {}

        def take(need):
            fits = [k for k in free_blocks if sizes[k] >= need]
            if fits:
                blk = min(fits, key=sizes.__getitem__)
            elif free_blocks:
                blk = max(free_blocks, key=sizes.__getitem__)
                sizes[blk] = need
            else:
                blk = len(sizes)
                sizes.append(need)
            if blk in free_blocks:
                free_blocks.remove(blk)
            return blk

        for step, n in enumerate(nodes):
            o = n.outputs[0] if n.outputs else ""
            if o in slices:  # a conv writing its channels of a Concat's output in place
                co, c0, c1 = slices[o]
                if co not in owner:
                    owner[co] = take(self._bytes(co))
                self.steps[step] = self.steps[step][:4] + (step,)
                self._arena_views.append((step, owner[co], self._shape(co), self.infos[co].dtype, (c0, c1)))
            elif o in cand:
                fn = self.steps[step][0]
                if o not in owner:
                    owner[o] = take(self._bytes(o))
                else:  # the Concat whose inputs were written into its output: nothing left to do
                    fn = _written
                self.steps[step] = (fn,) + self.steps[step][1:4] + (step,)
                self._arena_views.append((step, owner[o], self._shape(o), self.infos[o].dtype, None))
            for c in [c for c in owner if end[c] <= step]:
                free_blocks.append(owner.pop(c))
        self.arena_bytes = sum(sizes)
        self._arena_sizes = sizes

    def _concat_slices(self, cand):
        """Concats along channels of one image whose inputs are convs read by nothing else: each
        conv writes straight into its channels of the Concat's block (a C-contiguous slice when the
        batch is 1), and the Concat's copy disappears. Input -> (Concat output, first, end channel;
        in blocks of 16 when the Concat is blocked)."""
        readers = {}
        for n in self.graph.nodes:
            for i in set(n.inputs):
                if i:
                    readers[i] = readers.get(i, 0) + 1
        producer = {o: n for n in self.graph.nodes for o in n.outputs if o}
        slices = {}
        for n in self.graph.nodes:
            if not channel_concat(n, self.infos) or n.outputs[0] not in cand:
                continue
            ins = list(n.inputs)
            if (self.infos[n.outputs[0]].shape[0] != 1
                    or any(i not in cand or producer[i].op != "Conv" or readers.get(i) != 1 or i in slices
                           or self.infos[i].dtype != self.infos[n.outputs[0]].dtype for i in ins)):
                continue
            c0 = 0
            unit = nchwc.B if n.outputs[0] in self.blocked else 1
            for i in ins:
                c1 = c0 + -(-self.infos[i].shape[1] // unit)
                slices[i] = (n.outputs[0], c0, c1)
                c0 = c1
        return slices

    def _borrow_arena(self):
        """Per step, the out= array of its arena block (None for steps without one)."""
        if self._arenas:
            try:
                return self._arenas.pop()
            except IndexError:  # another thread took the last one
                pass
        blocks = [_aligned_bytes(n) for n in self._arena_sizes]
        views = [None] * len(self.steps)
        for step, blk, shape, dtype, channels in self._arena_views:
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            views[step] = blocks[blk][:n].view(dtype).reshape(shape)
            if channels is not None:
                views[step] = views[step][:, channels[0]:channels[1]]
        return views

    def run(self, arrays, times=None):
        """The graph's outputs for the input arrays; ``times``, when given, receives each step's
        seconds in node order (``profile``)."""
        env = self.env.copy()
        for s, a in zip(self.input_slots, arrays):
            env[s] = a
        multi = self.multi
        get = env.__getitem__
        clock = time.perf_counter if times is not None else None
        arena = self._borrow_arena()
        try:
            for fn, ins, out, free, a in self.steps:
                if clock:
                    t = clock()
                r = fn(*map(get, ins)) if a < 0 else fn(*map(get, ins), out=arena[a])
                if clock:
                    times.append(clock() - t)
                if out >= 0:
                    env[out] = r
                else:
                    for s, v in zip(multi[out], r):
                        if s is not None:
                            env[s] = v
                for s in free:
                    env[s] = None
        finally:
            self._arenas.append(arena)
        return [env[s] for s in self.output_slots]

    def profile(self, arrays, repeats=5):
        """Median seconds per node over ``repeats`` runs (one warm-up), in node order."""
        self.run(arrays)
        runs = []
        for _ in range(repeats):
            runs.append([])
            self.run(arrays, runs[-1])
        return np.median(np.array(runs).reshape(repeats, len(self.steps)), axis=0)

    def rows(self):
        """Per node: name, op, output shape, parameters, FLOPs, algorithm, what was fused."""
        rows = []
        init = self.graph.initializers
        for n, inplace in zip(self.graph.nodes, self.inplace):
            ins = [self.infos[i] if i else None for i in n.inputs]
            out = self.infos[n.outputs[0]].shape
            params = sum(int(np.asarray(init[i]).size) for i in n.inputs[1:3] if i in init) \
                if n.op in ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "PRelu") else 0
            flops, algo = _flops(n, ins, out), ""
            if n.outputs[0] in self.expand:
                a, a_ins = self.expand[n.outputs[0]]
                algo = "nchwc 1x1 expansion + depthwise"
                ins = [self.infos[a.outputs[0]]] + ins[1:]
                flops += _flops(a, a_ins, self.infos[a.outputs[0]].shape)
                params += sum(int(np.asarray(init[i]).size) for i in a.inputs[1:3] if i in init)
            elif n.op == "Conv":
                if n.outputs[0] in self.nchwc:
                    algo = "nchwc"
                elif self.precision == "bfloat16" and bf16_native(n, ins):
                    algo = f"bfloat16 {_core.conv2d_bf16_kernel()}"
                else:
                    algo = conv_algorithm(n, ins)
            elif n.outputs[0] in self.nchwc:
                algo = "nchwc"
            elif n.op == "ConvTranspose":
                algo = "conv input-gradient"
            ep = [e[0] if e[0] != "add" else "add " + n.inputs[e[1]] for e in n.epilogue]
            rows.append(dict(name=n.name, op=n.op, output=out, params=params, flops=flops, algorithm=algo,
                             groups=int(n.attrs.get("group", 1)), epilogue=ep, fused=list(n.fused), inplace=inplace))
        return rows


def _flops(n, ins, out):
    size = int(np.prod(out))
    if n.op == "Conv":
        k, cg, r, s = ins[1].shape
        return 2 * size * cg * r * s + size * len(n.epilogue)
    if n.op == "ConvTranspose":
        c_in, cg, r, s = ins[1].shape
        return 2 * int(np.prod(ins[0].shape)) * cg * r * s
    if n.op == "Gemm":
        a = ins[0].shape
        return 2 * size * (a[0] if n.attrs.get("transA", 0) else a[1])
    if n.op == "MatMul":
        return 2 * size * ins[0].shape[-1]
    if n.op in ("MaxPool", "AveragePool"):
        return size * int(np.prod(n.attrs["kernel_shape"]))
    return size


class CompiledGraph:
    """A prepared graph, specialised (and planned) per distinct batch size on first use."""

    def __init__(self, graph, input_shapes, fuse=True, precision="float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.graph, self.fuse, self.precision = graph, fuse, precision
        self.input_names = list(graph.inputs)
        self.input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
        self._plans = {}
        self.plan = self.plan_for(tuple(self.input_shapes[k] for k in self.input_names))

    def plan_for(self, shapes):
        plan = self._plans.get(shapes)
        if plan is None:
            from .passes import specialize

            g, infos = specialize(self.graph, dict(zip(self.input_names, shapes)), fuse=self.fuse)
            plan = Plan(g, infos, self.precision)
            if len(self._plans) > 16:
                self._plans.clear()
            self._plans[shapes] = plan
        return plan

    def check_inputs(self, arrays):
        if len(arrays) != len(self.input_names):
            raise TypeError(f"the model takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                            f"got {len(arrays)}")
        out = []
        for name, a in zip(self.input_names, arrays):
            if not isinstance(a, np.ndarray) or a.dtype != np.float32:
                if isinstance(a, np.ndarray) and a.dtype.kind not in "fiu" or a is None or isinstance(a, (str, bytes)):
                    raise TypeError(f"input {name!r} must be a float32 array, got "
                                    f"{a.dtype if isinstance(a, np.ndarray) else type(a).__name__}")
                a = np.asarray(a, np.float32)
            want = self.input_shapes[name]
            if a.ndim != len(want) or a.shape[1:] != want[1:]:
                raise GraphError(f"input {name!r} must have shape (N, {', '.join(map(str, want[1:]))}) (any batch "
                                 f"size N), got {a.shape}")
            out.append(a)
        return out

    def __call__(self, *arrays):
        arrays = self.check_inputs(arrays)
        shapes = tuple(a.shape for a in arrays)
        plan = self._plans.get(shapes) or self.plan_for(shapes)
        outs = plan.run(arrays)
        return outs[0] if len(outs) == 1 else tuple(outs)
