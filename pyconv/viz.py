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
    fig, ax = plt.subplots(figsize=(4, 4 * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, cmap=None if grid.ndim == 3 else "gray", interpolation="nearest")
    ax.set_title(f"{title} ({conv.weight.shape[0]} x {conv.weight.shape[1]}x{conv.weight.shape[2]}x{conv.weight.shape[3]})",
                 fontsize=9)
    ax.axis("off")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def activation_maps(model, image):
    """[(layer name, maps (K, H, W))] for every Conv2d of ``model`` on one ``image`` (C, H, W)."""
    maps = []
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: maps.append((name, out.data[0].copy())))
               for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.asarray(image, np.float32)[None]))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return maps


def save_activations(model, image, path, label=None, max_maps=16):
    maps = activation_maps(model, image)
    plt = _pyplot()
    cols = max_maps + 1
    fig, axes = plt.subplots(len(maps), cols, figsize=(cols * 0.9, len(maps) * 1.0 + 0.4), squeeze=False)
    img = np.asarray(image, np.float32)
    shown = _scale(img.transpose(1, 2, 0)) if img.shape[0] == 3 else img[0]
    for row, (name, a) in enumerate(maps):
        ax = axes[row][0]
        ax.imshow(shown, cmap=None if img.shape[0] == 3 else "gray", interpolation="nearest")
        ax.set_ylabel(f"conv {name}\n{a.shape[0]}x{a.shape[1]}x{a.shape[2]}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
        for j in range(1, cols):
            ax = axes[row][j]
            ax.axis("off")
            if j - 1 < a.shape[0]:
                ax.imshow(a[j - 1], cmap="viridis", interpolation="nearest")
    title = "activation maps of every conv layer" + (f" (input label: {label})" if label is not None else "")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_history(history, path):
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
