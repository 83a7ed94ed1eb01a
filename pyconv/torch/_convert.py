"""``convert(model)``: swap a model's nn.Conv2d / MaxPool2d / AvgPool2d for pyconv's modules.

The swap changes a module's class (to :class:`pyconv.torch.Conv2d` etc., subclasses of the
torch.nn ones) and nothing else: its ``__dict__`` -- Parameter and buffer objects, hooks,
attributes -- is kept as it is, so state_dict keys, optimizer state, DDP's registration of the
parameters and forward (pre-)hooks carry over. With ``inplace=False`` (the default) the model's
module tree is first copied shallowly: new module objects whose Parameters and buffers are the
original ones, so the original model keeps running torch and shares its weights with the
converted one.

torch.nn subclasses are converted only where pyconv's computation is certainly the one the class
would run: the subclass must not override ``forward`` (nor ``_conv_forward`` for convs). That
covers plain subclasses and parametrized modules (``torch.nn.utils.parametrize``, weight_norm);
each gets a derived class (pyconv's module first in the MRO, then the subclass), pickled as a
reference to the subclass. Others (subclasses with their own forward, lazy modules not yet
initialised, Conv1d/Conv3d and other types) are left to torch; ``stats()["not_converted"]`` says
which and why.
"""
import types
from collections import OrderedDict

from torch import nn

from . import _stats
from .modules import _derived  # noqa: F401  (the cache of derived classes; tests clear it)
from .modules import Conv2d, _check_algo, _PyconvModule, _torch_base, _unsafe, pyconv_class

def _rebind(v, old, new):
    """A hook that is a bound method of the copied module calls the copy (as deepcopy does)."""
    return types.MethodType(v.__func__, new) if isinstance(v, types.MethodType) and v.__self__ is old else v


def _shallow_copy(module):
    """A new module object with the same attributes; its own containers (parameter, buffer,
    submodule and hook dicts), holding the same Parameter, buffer and hook objects."""
    new = object.__new__(type(module))
    state = {}
    for k, v in module.__dict__.items():
        if type(v) in (dict, OrderedDict):
            v = type(v)((key, _rebind(h, module, new)) for key, h in v.items())
        elif type(v) is set:
            v = set(v)
        state[k] = v
    new.__dict__.update(state)
    return new


def _copy_tree(module, memo):
    if id(module) in memo:  # a module used twice stays one module
        return memo[id(module)]
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        # its initialisation hook removes itself through a handle on this module: share it
        # (it becomes the torch module it stands for on its first call, in both trees)
        memo[id(module)] = module
        return module
    new = _shallow_copy(module)
    memo[id(module)] = new
    for name, child in module._modules.items():
        if child is not None:
            new._modules[name] = _copy_tree(child, memo)
    return new


def _convertible(module):
    """The pyconv class for ``module``, or (None, reason) when it stays torch's (reason None: not ours)."""
    cls = type(module)
    if isinstance(module, _PyconvModule):
        return cls, None
    base = _torch_base(cls)
    if base is None:
        return None, None
    if cls is not base:
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            return None, f"{cls.__name__} is lazy and not initialised yet (run one forward first)"
        reason = _unsafe(cls, base)
        if reason is not None:
            return None, reason
    return pyconv_class(cls), None


def convert(model, *, algo="auto", inplace=False):
    """Compute ``model``'s nn.Conv2d, nn.MaxPool2d and nn.AvgPool2d with pyconv.

    Args:
        model: an ``nn.Module`` (a tree of them), or a single Conv2d / MaxPool2d / AvgPool2d.
        algo: pyconv's convolution algorithm for every converted Conv2d: ``"auto"`` (default),
            ``"direct"``, ``"im2col"`` or ``"winograd"`` (``Conv2d.algo`` can be set per layer).
        inplace: convert ``model`` itself. Default False: a shallow copy of the module tree is
            converted (same Parameter and buffer objects) and the original is left unchanged.

    Returns:
        The converted model. Parameters are the same objects as before, so an optimizer built
        on ``model.parameters()`` keeps working, and state_dict keys are unchanged.
    """
    _check_algo(algo)
    if not isinstance(model, nn.Module):
        raise TypeError(f"pyconv.torch.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = _copy_tree(model, {})
    seen = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen:
            continue
        seen.add(id(module))
        cls, reason = _convertible(module)
        if cls is None:
            if reason is not None:
                _stats.note_not_converted(name or type(module).__name__, reason)
            continue
        module.__class__ = cls
        if isinstance(module, Conv2d):
            module.algo = algo
    return model
