"""torch as an oracle for pyconv's float64 reference (tests/test_reference.py) and the sweeps:
each function runs torch.nn's op in float64 and returns numpy arrays. torch is imported lazily;
callers use pytest.importorskip."""
import numpy as np


def _t(a, requires_grad=False):
    import torch
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def torch_conv2d(x, w, bias, gy, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros"):
    """torch.nn.Conv2d semantics -> (y, grad_x, grad_w, grad_b) as float64 numpy."""
    import torch
    xt, wt = _t(x, True), _t(w, True)
    bt = None if bias is None else _t(bias, True)
    O, Cg, kh, kw = wt.shape
    conv = torch.nn.Conv2d(Cg * groups, O, (kh, kw), stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=False,
                           padding_mode=padding_mode, dtype=torch.float64)
    # use the module only for its padding logic; weights are ours
    y = conv._conv_forward(xt, wt, bt)
    y.backward(_t(gy))
    gb = None if bt is None else bt.grad.numpy()
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), gb


def torch_max_pool2d(x, gy, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False):
    """-> (y, indices, grad_x); gy may be None (no backward)."""
    import torch.nn.functional as F
    xt = _t(x, True)
    y, idx = F.max_pool2d(xt, kernel_size, stride, padding, dilation, ceil_mode,
                          return_indices=True)
    gx = None
    if gy is not None:
        y.backward(_t(gy))
        gx = xt.grad.numpy()
    return y.detach().numpy(), idx.numpy(), gx


def torch_avg_pool2d(x, gy, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    import torch.nn.functional as F
    xt = _t(x, True)
    y = F.avg_pool2d(xt, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)
    gx = None
    if gy is not None:
        y.backward(_t(gy))
        gx = xt.grad.numpy()
    return y.detach().numpy(), gx
