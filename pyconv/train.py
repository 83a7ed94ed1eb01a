"""A plain training loop (what ``pyconv train`` runs), usable from Python too.

:class:`Trainer` runs the epochs and can stop after any batch and continue later: its
:meth:`~Trainer.state` (JSON plus arrays, stored in a checkpoint) holds the epoch and batch
counters, the current epoch's shuffled order, the partial sums, the history, the schedule and
both random generators (shuffling/augmentation, and pyconv's own for dropout), so that a run
stopped after any batch and resumed gives bitwise the weights of the run left alone.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from . import nn, optim
from . import random as prandom
from .data import batches
from .tensor import Tensor, no_grad

__all__ = ["evaluate", "fit", "make_optimizer", "make_schedule", "Callback", "StepInfo", "Trainer",
           "TrainingDiverged"]


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; ``epoch`` and ``batch`` say where (batch 0: the test set)."""

    def __init__(self, epoch, batch, loss, batches, where="training"):
        self.epoch, self.batch, self.loss, self.batches = epoch, batch, loss, batches
        at = f"batch {batch} of {batches}" if where == "training" else "evaluating the test set"
        super().__init__(f"the {where} loss became {loss} at epoch {epoch}, {at}")


def make_optimizer(name, params, lr=None, momentum=0.9, weight_decay=0.0):
    """``"adam"`` (default lr 1e-3) or ``"sgd"`` (default lr 0.05, momentum 0.9)."""
    if name == "adam":
        return optim.Adam(params, lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=0.05 if lr is None else lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose adam or sgd")


def make_schedule(name, optimizer, epochs):
    """``"none"``, ``"cosine"`` (lr to 0 over ``epochs``) or ``"step"`` (x0.1 every epochs // 3)."""
    if name in (None, "none"):
        return None
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.1)
    raise ValueError(f"unknown schedule {name!r}; choose none, step or cosine")


def describe_schedule(name, lr, epochs):
    """One phrase for the run header: what the schedule does to the learning rate."""
    if name in (None, "none"):
        return f"constant lr {lr:g}"
    if name == "cosine":
        return f"lr {lr:g} cosine-annealed to 0 over {epochs} epoch{'s' if epochs != 1 else ''}"
    step = max(epochs // 3, 1)
    return f"lr {lr:g} x0.1 every {step} epoch{'s' if step != 1 else ''}"


@dataclass
class StepInfo:
    """One optimizer step, as :meth:`Callback.on_step_end` sees it."""
    epoch: int  # the epoch in progress (1-based)
    batch: int  # batches done in it, this one included
    size: int  # images in the batch
    loss: float  # the batch's mean loss
    correct: int  # images of the batch classified right (before the update)
    forward_seconds: float  # forward pass and loss
    backward_seconds: float  # backward pass and optimizer update


class Callback:
    """Observes :meth:`Trainer.run` (every method is optional; the defaults do nothing).

    ``on_step_begin`` runs before each batch and may block (a pause), use the model and change
    the optimizer (see :meth:`Trainer.set_hyperparameters`): the time it takes is not counted as
    training time. ``on_step_end`` runs after each optimizer step (parameters' ``.grad`` still hold
    the batch's gradients), ``on_epoch_end`` after each epoch's evaluation and schedule step.
    """

    def on_step_begin(self, trainer):
        pass

    def on_step_end(self, trainer, info):
        pass

    def on_epoch_end(self, trainer):
        pass


def evaluate(model, x, y, batch_size=256, group=None):
    """(mean cross-entropy loss, accuracy) of ``model`` on arrays ``x``, ``y`` in eval mode; with a
    :class:`pyconv.distributed.Group`, each process evaluates its share and the sums are combined."""
    if group is not None:
        part = group.shard(len(y))
        x, y = x[part], y[part]
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
    n = len(y)
    if group is not None:
        total_loss, correct, n = group.sum([total_loss, correct, n])
    n = max(n, 1)
    return total_loss / n, correct / n


class Trainer:
    """Trains ``model`` on ``train`` (a Dataset) for ``epochs``, evaluating on ``test`` after each.

    ``augment(x_batch, rng)`` (e.g. :class:`pyconv.data.Augment`) transforms each training
    batch. :meth:`run` returns ``"done"`` or, when ``should_stop()`` became true, ``"stopped"``
    after the batch in progress; :meth:`state` / :meth:`load_state` save and restore the rest.

    With ``group`` (a :class:`pyconv.distributed.Group`, one per process of a data-parallel run),
    each process computes its share of every batch and the gradients are combined before the step,
    so the run takes the steps one process would take on the whole batches.
    """

    def __init__(self, model, train, test, epochs, optimizer, batch_size=32, seed=0, schedule=None, augment=None,
                 group=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.train_set, self.test_set = model, train, test
        self.epochs, self.optimizer, self.batch_size = epochs, optimizer, batch_size
        self.schedule, self.augment = schedule, augment
        self.rng = np.random.default_rng(seed)
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done in epoch self.epoch + 1
        self.order = None  # that epoch's shuffled order, while it is in progress
        self.partial = None
        self.history = []
        self.loss_fn = nn.CrossEntropyLoss()
        self.group = group

    @property
    def batches_per_epoch(self):
        return -(-len(self.train_set) // self.batch_size)

    @property
    def finished(self):
        return self.epoch >= self.epochs

    # ------------------------------------------------------------------ state
    def state(self):
        """(JSON-serialisable dict, {name: array}) with everything :meth:`load_state` needs."""
        meta = dict(epoch=self.epoch, batch=self.batch, partial=self.partial, history=self.history,
                    rng=self.rng.bit_generator.state, pyconv_rng=prandom.get_state(),
                    schedule=self.schedule.state_dict() if self.schedule is not None else None,
                    hyperparameters=self.hyperparameters())
        arrays = {"order": self.order} if self.order is not None else {}
        return meta, arrays

    def load_state(self, meta, arrays):
        self.epoch, self.batch = int(meta["epoch"]), int(meta["batch"])
        self.partial, self.history = meta["partial"], list(meta["history"])
        self.rng.bit_generator.state = meta["rng"]
        prandom.set_state(meta["pyconv_rng"])
        if self.schedule is not None and meta.get("schedule") is not None:
            self.schedule.load_state_dict(meta["schedule"])
        hyper = meta.get("hyperparameters") or {}
        self.set_hyperparameters(momentum=hyper.get("momentum"), weight_decay=hyper.get("weight_decay"))
        # the epoch in progress, if any (stopped mid-epoch, or before its first batch by a callback)
        self.order = np.asarray(arrays["order"], np.int64) if "order" in arrays else None
        if (self.batch and self.order is None) or (self.order is not None and len(self.order) != len(self.train_set)):
            raise ValueError("the saved state's shuffled order does not match the training set")
        return self

    # ------------------------------------------------------------------ hyper-parameters
    def hyperparameters(self):
        """``{"lr", "momentum", "weight_decay"}`` of the optimizer now (Adam's momentum: beta1)."""
        d = self.optimizer.defaults
        momentum = d["betas"][0] if "betas" in d else d.get("momentum", 0.0)
        return dict(lr=float(self.optimizer.lr), momentum=float(momentum), weight_decay=float(d["weight_decay"]))

    def set_hyperparameters(self, lr=None, momentum=None, weight_decay=None):
        """Changes the optimizer from its next step (None: unchanged). A learning-rate schedule
        goes on from the new rate: its base is rescaled so that it gives ``lr`` now."""
        opt, d = self.optimizer, self.optimizer.defaults
        if lr is not None:
            lr = float(lr)
            sched = self.schedule
            if sched is not None and sched.base_lr > 0:
                factor = sched.lr_at(sched.epoch) / sched.base_lr
                if factor > 0:
                    sched.base_lr = lr / factor
            opt.lr = lr
        if momentum is not None:
            if "betas" in d:
                d["betas"] = (float(momentum), d["betas"][1])
            else:
                d["momentum"] = float(momentum)
        if weight_decay is not None:
            d["weight_decay"] = float(weight_decay)

    # ------------------------------------------------------------------ running
    def run(self, progress=None, on_epoch=None, should_stop=None, callbacks=()):
        """Runs the remaining epochs. ``progress(epoch, total, done)`` returns a bar with
        ``update(loss, accuracy, images_per_second)`` and ``close()``; ``on_epoch(trainer)`` is
        called after each epoch (history updated, schedule stepped); ``callbacks`` are
        :class:`Callback` objects."""
        model, opt, train, group = self.model, self.optimizer, self.train_set, self.group
        params = list(model.parameters())
        callbacks = list(callbacks)
        if group is not None:
            if callbacks:
                raise ValueError("callbacks (such as the --serve page) cannot pause a data-parallel run")
            group.sync_model(model)
        bs, n_batches = self.batch_size, self.batches_per_epoch
        while not self.finished:
            epoch = self.epoch + 1
            if self.order is None:
                self.order = self.rng.permutation(len(train))
                self.batch = 0
                self.partial = dict(seen=0, loss_sum=0.0, correct=0, seconds=0.0)
            model.train()
            bar = progress(epoch, n_batches, self.batch) if progress else None
            p = self.partial
            t0 = time.perf_counter()
            try:
                while self.batch < n_batches:
                    if callbacks:
                        t_wait = time.perf_counter()
                        for cb in callbacks:
                            cb.on_step_begin(self)
                        t0 += time.perf_counter() - t_wait  # a pause is not training time
                        if should_stop is not None and (self.batch or self.epoch) and should_stop():
                            return "stopped"  # asked while paused: no further batch
                        model.train()  # a callback may have evaluated the model
                    t_start = time.perf_counter()
                    idx = self.order[self.batch * bs:(self.batch + 1) * bs]
                    xb, yb = train.x[idx], train.y[idx]
                    if self.augment is not None:  # the whole batch: every process draws the same numbers
                        xb = self.augment(xb, self.rng)
                    n_batch = len(yb)
                    if group is not None:
                        part = group.shard(n_batch)
                        xb, yb = xb[part], yb[part]
                    opt.zero_grad()
                    value, correct = 0.0, 0
                    if len(yb):
                        logits = model(Tensor(xb))
                        loss = self.loss_fn(logits, yb)
                        value = float(loss.item())
                        correct = int((logits.data.argmax(axis=1) == yb).sum())
                    if group is None and not math.isfinite(value):  # before the update: the weights stay
                        raise TrainingDiverged(epoch, self.batch + 1, value, n_batches)  # those of the last good step
                    t_forward = time.perf_counter()
                    if len(yb):
                        loss.backward()
                    stop_now = False
                    if group is not None:  # the whole batch's gradient, loss, accuracy and stop flag
                        asked = should_stop is not None and self.batch + 1 < n_batches and should_stop()
                        value, correct, stop_now = group.reduce_step(params, len(yb), n_batch, value * len(yb),
                                                                     correct, asked)
                        if not math.isfinite(value):  # every process sees the same value and stops here
                            raise TrainingDiverged(epoch, self.batch + 1, value, n_batches)
                    opt.step()
                    self.batch += 1
                    p["seen"] += n_batch
                    p["loss_sum"] += value * n_batch
                    p["correct"] += correct
                    if callbacks:
                        info = StepInfo(epoch, self.batch, n_batch, value, correct, t_forward - t_start,
                                        time.perf_counter() - t_forward)
                        for cb in callbacks:
                            cb.on_step_end(self, info)
                    if bar is not None:
                        bar.update(p["loss_sum"] / p["seen"], p["correct"] / p["seen"],
                                   p["seen"] / (p["seconds"] + time.perf_counter() - t0))
                    if group is not None:
                        if stop_now:
                            return "stopped"
                    elif should_stop is not None and self.batch < n_batches and should_stop():
                        return "stopped"
            finally:
                p["seconds"] += time.perf_counter() - t0
                if bar is not None:
                    bar.close()
            if group is not None:
                group.average_buffers(model)
            test_loss, test_acc = evaluate(model, self.test_set.x, self.test_set.y, group=group)
            if len(self.test_set) and not math.isfinite(test_loss):
                raise TrainingDiverged(epoch, 0, test_loss, n_batches, where="test")
            seen, seconds = max(p["seen"], 1), p["seconds"]
            self.history.append(dict(epoch=epoch, train_loss=p["loss_sum"] / seen, train_accuracy=p["correct"] / seen,
                                     test_loss=test_loss, test_accuracy=test_acc, seconds=seconds,
                                     images_per_second=p["seen"] / seconds if seconds > 0 else 0.0, lr=opt.lr))
            if self.schedule is not None:
                self.schedule.step()
            self.epoch, self.batch, self.order, self.partial = epoch, 0, None, None
            if on_epoch is not None:
                on_epoch(self)
            for cb in callbacks:
                cb.on_epoch_end(self)
            if should_stop is not None and not self.finished:
                asked = should_stop()
                if group is not None:
                    asked = bool(group.sum([asked])[0] > 0)
                if asked:
                    return "stopped"
        return "done"


def fit(model, train, test, epochs, optimizer, batch_size=32, seed=0, schedule=None, progress=None, augment=None):
    """Trains ``model`` on ``train`` (a Dataset), evaluating on ``test`` after each epoch.

    ``progress(epoch, total, done)`` may return a progress bar (``update(loss, accuracy,
    images_per_second)``, ``close()``). Returns the per-epoch history: dicts with epoch,
    train_loss, train_accuracy, test_loss, test_accuracy, seconds, images_per_second, lr.
    Raises :class:`TrainingDiverged` when the loss becomes NaN or infinite.
    """
    trainer = Trainer(model, train, test, epochs, optimizer, batch_size, seed, schedule, augment)
    trainer.run(progress)
    return trainer.history
