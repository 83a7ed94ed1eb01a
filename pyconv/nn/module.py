"""Module and Parameter: the containers layers are built from (torch.nn.Module's API)."""
from collections import OrderedDict

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a module's learnable parameter (requires_grad by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(np.array(data.data if isinstance(data, Tensor) else data, copy=True),
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer: holds parameters, buffers and sub-modules in insertion order."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for d in ("_parameters", "_buffers", "_modules"):
            table = self.__dict__.get(d)
            if table is not None and name in table:
                return table[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, value):
        """A persistent non-learnable array (e.g. BatchNorm running statistics), saved in state_dict."""
        self._buffers[name] = value

    def register_parameter(self, name, param):
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            self._parameters[name] = param

    # ---------------------------------------------------------------- running
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; returns a handle with ``remove()``."""
        key = object()
        self._forward_hooks[key] = hook
        hooks = self._forward_hooks

        class _Handle:
            def remove(self):
                hooks.pop(key, None)

        return _Handle()

    def train(self, mode=True):
        object.__setattr__(self, "training", bool(mode))
        for m in self.children():
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------- traversal
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in modules:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for mprefix, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mprefix}.{name}" if mprefix else name), b

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # ---------------------------------------------------------------- dtype
    def to(self, dtype):
        """Cast every parameter and floating buffer to ``dtype`` (float32 or float64), in place."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for name, p in list(m._parameters.items()):
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dtype)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ---------------------------------------------------------------- state
    def state_dict(self):
        """Ordered name -> ndarray copy of every parameter and buffer (torch's naming: ``0.weight``)."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data.copy()
        for name, b in self.named_buffers():
            out[name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into parameters and buffers; errors name the entry and both shapes."""
        own = OrderedDict(self.named_parameters())
        buffers = OrderedDict()
        for mprefix, m in self.named_modules():
            for name in m._buffers:
                buffers[f"{mprefix}.{name}" if mprefix else name] = (m, name)
        missing = [k for k in list(own) + list(buffers) if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own and k not in buffers]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected)}")
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        for k, v in state_dict.items():
            v = np.asarray(v.data if isinstance(v, Tensor) else v)
            if k in own:
                p = own[k]
                if v.shape != p.shape:
                    raise ValueError(f"load_state_dict: parameter '{k}' has shape {p.shape} in the model but "
                                     f"{v.shape} in the checkpoint")
                p.data[...] = v
            elif k in buffers:
                m, name = buffers[k]
                old = np.asarray(m._buffers[name])
                if v.shape != old.shape:
                    raise ValueError(f"load_state_dict: buffer '{k}' has shape {old.shape} in the model but "
                                     f"{v.shape} in the checkpoint")
                m._buffers[name] = v.astype(old.dtype, copy=True)
        return self

    # ---------------------------------------------------------------- repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
