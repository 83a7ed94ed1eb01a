"""Module and Parameter: the containers layers are built from (torch.nn.Module's API)."""
from collections import OrderedDict

import numpy as np

from ..tensor import RemovableHandle, Tensor


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
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value  # assigning to a buffer's name updates the buffer, as torch
            return
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
        if not self._forward_hooks:
            return out
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; returns a handle with ``remove()``."""
        return RemovableHandle(self._forward_hooks, hook)

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
    def _state_items(self, prefix=""):
        """(name, owner, kind, attribute) for every parameter then buffer of each module, module by
        module and without removing shared modules: torch's state_dict order and keys."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, self, "param", name
        for name in self._buffers:
            yield prefix + name, self, "buffer", name
        for name, m in self._modules.items():
            yield from m._state_items(f"{prefix}{name}.")

    def state_dict(self):
        """Ordered name -> ndarray copy of every parameter and buffer (torch's names and order)."""
        out = OrderedDict()
        for key, owner, kind, name in self._state_items():
            value = owner._parameters[name].data if kind == "param" else owner._buffers[name]
            out[key] = np.array(value, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into parameters and buffers; errors name the entry and both shapes."""
        items = list(self._state_items())
        own = {key for key, *_ in items}
        missing = [key for key, *_ in items if key not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected)}")
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        for key, owner, kind, name in items:
            if key not in state_dict:
                continue
            v = state_dict[key]
            v = np.asarray(v.data if isinstance(v, Tensor) else v)
            old = owner._parameters[name].data if kind == "param" else np.asarray(owner._buffers[name])
            if v.shape != old.shape:
                what = "parameter" if kind == "param" else "buffer"
                raise ValueError(f"load_state_dict: {what} '{key}' has shape {old.shape} in the model but "
                                 f"{v.shape} in the checkpoint")
            if kind == "param":
                owner._parameters[name].data[...] = v
            else:
                owner._buffers[name] = v.astype(old.dtype, copy=True)
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
