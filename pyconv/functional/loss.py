"""Softmax cross-entropy: the checked public op and the numpy passes its autograd Function runs."""
import numpy as np

from ._args import _array, _choice, _ndim, data, recorder


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits ``(N, C)`` against integer class indices ``(N,)``, as PyTorch."""
    fn = "cross_entropy"
    recording = recorder(input)
    x = input.data if recording is not None else _array(fn, "input", input)
    t = np.asarray(data(target))
    if x.ndim == 1:
        x, t = x[None], t.reshape(1)
        if recording is not None:
            input = input.reshape(1, -1)
        else:
            input = x
    _ndim(fn, "input", x, (2,))
    if t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"{fn}: target must have shape ({x.shape[0]},) for input {x.shape}, got {t.shape}")
    # Common case first: every target is a class index (then ignore_index needs no mask).
    if t.size and not (0 <= t.min() and t.max() < x.shape[1]):
        valid = t != ignore_index
        if valid.any() and (t[valid].min() < 0 or t[valid].max() >= x.shape[1]):
            raise ValueError(f"{fn}: target values must be in [0, {x.shape[1]}), got range "
                             f"[{t[valid].min()}, {t[valid].max()}]")
    _choice(fn, "reduction", reduction, ("mean", "sum", "none"))
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    w = None
    if weight is not None:
        w = np.asarray(data(weight), dtype=x.dtype)
        if w.shape != (x.shape[1],):
            raise ValueError(f"{fn}: weight must have shape ({x.shape[1]},) (classes), got {w.shape}")
        if label_smoothing:
            raise NotImplementedError(f"{fn}: weight together with label_smoothing is not supported")
    kwargs = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=float(label_smoothing))
    if recording is not None:
        return recording.CrossEntropy.apply(input, t, **kwargs)
    return _cross_entropy_fwd(input, t, **kwargs)[0]


def _cross_entropy_fwd(logits, target, *, weight, ignore_index, reduction, label_smoothing):
    """(loss, what the backward pass needs)."""
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    n, c = logits.shape
    valid = target != ignore_index
    if weight is None and valid.all():  # the common case: unit weights, nothing ignored
        t, wi = target, np.ones(n, logits.dtype)
    else:
        t = np.where(valid, target, 0)
        w = np.ones(c, logits.dtype) if weight is None else weight
        wi = w[t] * valid
    nll = -logp[np.arange(n), t]
    loss = (1 - label_smoothing) * nll + label_smoothing * (-logp.mean(axis=1)) if label_smoothing else nll
    loss = loss * wi
    denom = wi.sum() if reduction == "mean" else 1
    saved = (logp, t, wi, denom, reduction, label_smoothing)
    if reduction == "none":
        return loss.astype(logits.dtype), saved
    total = loss.sum()
    return np.asarray(total / denom if reduction == "mean" else total, dtype=logits.dtype), saved


def _cross_entropy_bwd(g, saved):
    """The logits' gradient."""
    logp, t, wi, denom, reduction, eps = saved
    n, c = logp.shape
    q = np.full((n, c), eps / c, logp.dtype) if eps else np.zeros((n, c), logp.dtype)
    q[np.arange(n), t] += 1 - eps
    scale = (wi / denom if reduction == "mean" else wi) * (g if reduction == "none" else g.reshape(()))
    return (np.exp(logp) - q) * scale[:, None]
