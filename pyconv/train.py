"""A plain training loop (what ``pyconv train`` runs), usable from Python too."""
import time

import numpy as np

from . import nn, optim
from .data import batches
from .tensor import Tensor, no_grad

__all__ = ["evaluate", "fit", "make_optimizer", "make_schedule"]


def make_optimizer(name, params, lr=None, momentum=0.9, weight_decay=0.0):
    """``"adam"`` (default lr 1e-3) or ``"sgd"`` (default lr 0.05, momentum 0.9)."""
    if name == "adam":
        return optim.Adam(params, lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=0.05 if lr is None else lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose adam or sgd")


def make_schedule(name, optimizer, epochs):
    if name in (None, "none"):
        return None
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.1)
    raise ValueError(f"unknown schedule {name!r}; choose none, step or cosine")


def evaluate(model, x, y, batch_size=256):
    """(mean cross-entropy loss, accuracy) of ``model`` on arrays ``x``, ``y`` in eval mode."""
    was_training = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    with no_grad():
        for xb, yb in batches(x, y, batch_size):
            logits = model(Tensor(xb))
            total_loss += float(loss_fn(logits, yb).item())
            correct += int((logits.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    n = max(len(y), 1)
    return total_loss / n, correct / n


def fit(model, train, test, epochs, optimizer, batch_size=32, seed=0, schedule=None, progress=None):
    """Trains ``model`` on ``train`` (a Dataset), evaluating on ``test`` after each epoch.

    ``progress(epoch, iterator, total)`` may wrap the batch iterator (a progress bar) and receives
    ``set(loss, accuracy, images_per_second)`` updates through the returned object's ``update``.
    Returns the per-epoch history: dicts with epoch, train_loss, train_accuracy, test_accuracy,
    test_loss, seconds, images_per_second, lr.
    """
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        seen, loss_sum, correct = 0, 0.0, 0
        n_batches = -(-len(train) // batch_size)
        it = batches(train.x, train.y, batch_size, shuffle=True, rng=rng)
        bar = progress(epoch, n_batches) if progress else None
        for xb, yb in it:
            logits = model(Tensor(xb))
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(yb)
            loss_sum += float(loss.item()) * len(yb)
            correct += int((logits.data.argmax(axis=1) == yb).sum())
            if bar is not None:
                bar.update(loss_sum / seen, correct / seen, seen / (time.perf_counter() - t0))
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        test_loss, test_acc = evaluate(model, test.x, test.y)
        history.append(dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1),
                            test_loss=test_loss, test_accuracy=test_acc, seconds=seconds,
                            images_per_second=seen / seconds if seconds > 0 else 0.0, lr=optimizer.lr))
        if schedule is not None:
            schedule.step()
    return history
