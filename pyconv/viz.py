"""Pictures of a network (ConvNetJS's demo views) as PNG files, with matplotlib.

``filter_grid`` tiles the first layer's filters; ``activation_maps`` shows what every conv layer
outputs for one image; ``plot_history`` draws the loss and accuracy curves.
"""
import numpy as np

from . import nn
from .tensor import Tensor, no_grad

__all__ = ["filter_grid", "save_filters", "activation_maps", "save_activations", "plot_history"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _scale(a):
    lo, hi = float(np.min(a)), float(np.max(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def filter_grid(weight, pad=1):
    """Tiles filters ``(K, C, R, S)`` into one image: RGB when C == 3, else one gray tile per
    filter and channel (K rows of C tiles). Each filter is scaled to [0, 1] on its own."""
    w = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=np.float32)
    k, c, r, s = w.shape
    rgb = c == 3
    tiles = [_scale(f).transpose(1, 2, 0) for f in w] if rgb else [_scale(f[i])[..., None] for f in w for i in range(c)]
    cols = int(np.ceil(np.sqrt(k))) if rgb or c == 1 else c
    rows = int(np.ceil(len(tiles) / cols))
    ch = 3 if rgb else 1
    grid = np.ones((rows * (r + pad) + pad, cols * (s + pad) + pad, ch), np.float32)
    for i, t in enumerate(tiles):
        y, x = divmod(i, cols)
        grid[pad + y * (r + pad): pad + y * (r + pad) + r, pad + x * (s + pad): pad + x * (s + pad) + s] = t
    return grid if rgb else grid[..., 0]


def _first_conv(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError("the model has no Conv2d layer")


def save_filters(model, path, title="first-layer filters"):
    conv = _first_conv(model)
    plt = _pyplot()
    grid = filter_grid(conv.weight)
    k, c, r, s = conv.weight.shape
    fig, ax = plt.subplots(figsize=(4, 4 * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, cmap=None if grid.ndim == 3 else "gray", interpolation="nearest")
    ax.set_title(f"{title}: {k} filters of {c}x{r}x{s} (CxHxW)", fontsize=9)
    ax.axis("off")
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _watched(model):
    """(name, module to hook, after_relu) per Conv2d: the ReLU right after it in its Sequential
    when there is one (its output is what the next layer sees), else the conv itself."""
    out, seen = [], set()
    for prefix, parent in model.named_modules():
        kids = list(parent.named_children())
        for i, (name, m) in enumerate(kids):
            if not isinstance(m, nn.Conv2d) or id(m) in seen:
                continue
            seen.add(id(m))
            full = f"{prefix}.{name}" if prefix else name
            nxt = kids[i + 1][1] if i + 1 < len(kids) else None
            if nxt is not None and hasattr(parent, "node_inputs") and parent.node_inputs(kids[i + 1][0]) != [name]:
                nxt = None  # in a Graph, the next node may read another branch
            out.append((full, nxt, True) if isinstance(nxt, nn.ReLU) else (full, m, False))
    return out


def activation_maps(model, image):
    """[(conv layer name, maps (K, H, W), after_relu)] for every Conv2d of ``model`` on one
    ``image`` (C, H, W): the maps after the ReLU that follows the conv, if one does."""
    maps = {}
    watched = _watched(model)

    def keep(name):
        def hook(module, inputs, output):
            maps.setdefault(name, output.data[0].copy())  # returns None: the output is left as it is
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m, _ in watched]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.asarray(image, np.float32)[None]))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(name, maps[name], relu) for name, _, relu in watched if name in maps]


def save_activations(model, image, path, label=None, max_maps=64, cols=16, title=None, prediction=None):
    """One block of rows per conv layer: the input, then up to ``max_maps`` activation maps
    (``cols`` per row), each labelled with the layer, its output volume (CxHxW), whether the maps
    are after its ReLU, and how many of its maps are shown."""
    maps = activation_maps(model, image)
    if not maps:
        raise ValueError("the model has no Conv2d layer")
    plt = _pyplot()
    blocks = [max(1, -(-min(len(a), max_maps) // cols)) for _, a, _ in maps]
    fig, axes = plt.subplots(sum(blocks), cols + 1, figsize=((cols + 1) * 0.75, sum(blocks) * 0.8 + 0.9),
                             squeeze=False)
    img = np.asarray(image, np.float32)
    shown = _scale(img.transpose(1, 2, 0)) if img.shape[0] == 3 else img[0]
    row = 0
    for (name, a, relu), nrows in zip(maps, blocks):
        k = len(a)
        n = min(k, max_maps)
        for r in range(nrows):
            ax = axes[row + r][0]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.imshow(shown, cmap=None if img.shape[0] == 3 else "gray", interpolation="nearest")
                what = "after ReLU" if relu else "conv output (no ReLU)"
                count = f"all {k} maps" if n == k else f"first {n} of {k} maps"
                ax.set_ylabel(f"conv {name}\n{'x'.join(map(str, a.shape))} CxHxW\n{what}\n{count}", fontsize=5.5)
            else:
                ax.axis("off")
            for j in range(cols):
                ax = axes[row + r][j + 1]
                ax.axis("off")
                idx = r * cols + j
                if idx < n:
                    ax.imshow(a[idx], cmap="viridis", interpolation="nearest")
        row += nrows
    head = title or "activation maps of every conv layer"
    detail = []
    if label is not None:
        detail.append(f"input label {label}")
    if prediction is not None:
        detail.append(f"predicted {prediction}")
    fig.suptitle(head + (f" ({', '.join(detail)})" if detail else ""), fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_history(history, path, title=None):
    """Loss and accuracy per epoch (whole-number epoch ticks), titled e.g. with the model, the
    data set and the final test accuracy."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.3))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["test_loss"] for h in history], "o-", label="test")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy loss")
    a1.legend()
    a2.plot(ep, [h["train_accuracy"] for h in history], "o-", label="train")
    a2.plot(ep, [h["test_accuracy"] for h in history], "o-", label="test")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title is None and history:
        title = f"test accuracy {history[-1]['test_accuracy']:.4f} after {history[-1]['epoch']} epochs"
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
