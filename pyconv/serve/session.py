"""The training side of the live page: a :class:`~pyconv.train.Callback` and what the server reads.

Only the training thread touches the model and the optimizer. The server's threads read the
:class:`Hub` (the latest numbers, the loss curve, the latest snapshot, under one lock) and ask
for changes through :meth:`LiveSession.call`, which queues a function that the training thread
runs between two steps (or while paused, or after training, until Ctrl-C) and waits for its
result. Nothing the training thread does waits on a browser: it only replaces what the Hub
holds, so a slow or vanished page never slows or stops training.

Snapshots (see :mod:`.snapshot`) are taken every few steps, on a time budget: at most
``budget`` (4%) of the training time and at most ``1 / min_interval`` per second.
"""
import concurrent.futures
import json
import os
import queue
import secrets
import threading
import time
from collections import deque

import numpy as np

from ..train import Callback
from .controls import ControlError, check_hyperparameters, check_index, decode_upload
from .snapshot import Probe, encode_bytes, pick_sample

__all__ = ["Hub", "LiveSession"]

MAX_POINTS = 2000  # loss-curve points kept; past that, every other one goes and the stride doubles
WINDOW = 50  # batches in the moving averages (the demo's: 100 examples)
SAMPLE = 10  # fixed test images: one per class


class Hub:
    """What the server's threads read: replaced whole by the training thread, under one lock."""

    def __init__(self):
        self.cond = threading.Condition()
        self.info = {}
        self.stats, self.stats_seq = {}, 0
        self.points, self.points_gen, self.point_stride = [], 0, 1
        self.history = []
        self.snapshot, self.snapshot_seq, self._snapshot_json = None, 0, None
        self.closed = False
        self.streams = 0  # open /events connections
        self.urgent = 0  # publications the pages should see at once (what a control changed)

    def enter(self):
        with self.cond:
            self.streams += 1

    def leave(self):
        with self.cond:
            self.streams -= 1
            self.cond.notify_all()

    def sleep(self, seconds):
        """Waits ``seconds``, or less if the hub closes or something urgent (a control's effect) is
        published."""
        with self.cond:
            urgent = self.urgent
            self.cond.wait_for(lambda: self.closed or self.urgent != urgent, seconds)

    def wait_streams_closed(self, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.streams == 0, timeout)

    def publish(self, stats=None, snapshot=None, history=None, urgent=False):
        with self.cond:
            self.urgent += bool(urgent)
            if stats is not None:
                self.stats, self.stats_seq = stats, self.stats_seq + 1
            if snapshot is not None:
                self.snapshot, self._snapshot_json = snapshot, None
                self.snapshot_seq += 1
            if history is not None:
                self.history = history
            self.cond.notify_all()

    def add_point(self, step, point):
        with self.cond:
            if step % self.point_stride:
                return
            self.points.append(point)
            if len(self.points) > MAX_POINTS:
                self.points = self.points[::2]
                self.point_stride *= 2
                self.points_gen += 1

    def snapshot_json(self):
        """The latest snapshot as JSON text, encoded once for every page that asks."""
        with self.cond:
            if self._snapshot_json is None and self.snapshot is not None:
                self._snapshot_json = json.dumps(self.snapshot, separators=(",", ":"), allow_nan=False)
            return self._snapshot_json, self.snapshot_seq

    def wait(self, seen, timeout):
        """Blocks until (stats_seq, snapshot_seq) differs from ``seen``, the hub closes or
        ``timeout`` passes; returns the current pair."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed or (self.stats_seq, self.snapshot_seq) != seen, timeout)
            return self.stats_seq, self.snapshot_seq

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class LiveSession(Callback):
    """Observes ``trainer`` for the page, and carries out the page's controls between steps.

    ``meta`` is the run's checkpoint description (classes, normalisation, dataset), ``opts`` its
    options, ``save(path)`` writes a checkpoint of the run as it is, ``should_stop()`` says that
    Ctrl-C was pressed (a pause then ends).
    """

    def __init__(self, trainer, meta, opts, save=None, should_stop=None, header="", budget=0.04, min_interval=1.0):
        self.trainer, self.meta, self.opts = trainer, meta, opts
        self.save_fn, self.should_stop = save, should_stop
        self.budget, self.min_interval = budget, min_interval
        self.run_id = secrets.token_hex(8)
        self.hub = Hub()
        self.tasks = queue.Queue()
        self.closed = False
        self.paused, self.status, self.message = False, "starting", "starting"
        self.selected, self.saved = 0, []
        self.window = deque(maxlen=WINDOW)
        self.sums = [0, 0.0, 0]  # images, loss * images, correct in the window
        self.fwd = self.bwd = None  # seconds per image, moving averages
        self.snap_cost, self.last_snap = 0.0, -1e9
        self.layer_stats, self.predictions, self.l2_loss, self.snap_step = [], [], None, None
        self.last_publish = -1e9
        self.overhead = 0.0  # seconds the training thread spent on the page (stats, snapshots) after steps
        self._history = (-1, [])  # (epochs, their rows made JSON-safe): rebuilt only when one ends
        test = trainer.test_set if len(trainer.test_set) else trainer.train_set
        idx = pick_sample(test.y, test.classes, SAMPLE)
        norm = meta.get("normalize") or {}
        c = test.image_shape[0]
        self.probe = Probe(trainer.model, test.x[idx], test.y[idx], test.classes, norm.get("mean", [0.0] * c),
                           norm.get("std", [1.0] * c))
        self.invert_default = meta.get("dataset") == "digits"
        self.hub.info = dict(
            id=self.run_id, header=header, model=opts.get("model"), dataset=opts.get("dataset"),
            input=self.probe.layers[0]["volume"], classes=list(test.classes), optimizer=opts.get("optimizer"),
            batch_size=trainer.batch_size, epochs=trainer.epochs, batches_per_epoch=trainer.batches_per_epoch,
            train_images=len(trainer.train_set), test_images=len(trainer.test_set),
            parameters=int(trainer.model.num_parameters()), out=opts.get("out") or None,
            layers=self.probe.layers, sample=self.probe.display_images(), invert_default=self.invert_default)
        self._snapshot(None)  # the network before its first step
        self._publish(force=True)

    # ------------------------------------------------------------------ numbers
    @property
    def step(self):
        return int(self.trainer.optimizer.step_count)

    def _examples_seen(self):
        t = self.trainer
        return t.epoch * len(t.train_set) + ((t.partial or {}).get("seen", 0) if t.batch else 0)

    def state(self):
        """The documented ``GET /state`` object (see the README)."""
        t, n = self.trainer, self.sums[0]
        last = t.history[-1] if t.history else {}
        hyper = t.hyperparameters()
        ms = (lambda s: None if s is None else s * 1e3)
        names = {layer["name"]: layer for layer in self.probe.layers}
        layers = [dict(names[s["name"]], activation=s["activation"], gradient=s["gradient"]) for s in self.layer_stats]
        classes = self.hub.info["classes"]
        preds = [dict(label=classes[int(y)], top=[dict(cls=classes[e["index"]], p=e["p"]) for e in top])
                 for y, top in zip(self.probe.y, self.predictions)]
        return dict(
            run=self.run_id, status=self.status, message=self.message, paused=self.paused,
            epoch=t.epochs if t.finished else t.epoch + 1, epochs=t.epochs,
            batch=t.batch, batches_per_epoch=t.batches_per_epoch, step=self.step,
            examples_seen=self._examples_seen(),
            loss=self.sums[1] / n if n else None, train_accuracy=self.sums[2] / n if n else None,
            l2_loss=self.l2_loss, test_loss=last.get("test_loss"), test_accuracy=last.get("test_accuracy"),
            forward_ms_per_example=ms(self.fwd), backward_ms_per_example=ms(self.bwd),
            lr=hyper["lr"], momentum=hyper["momentum"], weight_decay=hyper["weight_decay"],
            history=self._clean_history(), saved=list(self.saved), serve_seconds=self.overhead,
            snapshot=dict(step=self.snap_step, image=self.selected, label=classes[int(self.probe.y[self.selected])],
                          every_seconds=max(self.min_interval, self.snap_cost / self.budget)),
            layers=layers, predictions=preds)

    def _clean_history(self):
        h = self.trainer.history
        if self._history[0] != len(h):
            self._history = (len(h), _clean(h))
        return self._history[1]

    def _publish(self, force=False, history=False, urgent=False):
        now = time.perf_counter()
        if not force and now - self.last_publish < 0.25:  # /state stays this fresh; pages get 1 a second
            return
        self.last_publish = now
        state = self.state()
        rows = state.pop("history")  # JSON-safe already
        stats = _clean(state)
        stats["history"] = rows
        self.hub.publish(stats=stats, history=rows if history else None, urgent=urgent)

    def _snapshot(self, weight_grads):
        t0 = time.perf_counter()
        snap = self.probe.compute(self.selected, weight_grads, self.trainer.hyperparameters()["weight_decay"])
        self.layer_stats = snap.pop("stats")
        self.predictions, self.l2_loss = snap["predictions"], snap["l2_loss"]
        self.snap_step = self.step
        snap.update(step=self.step, epoch=self.trainer.epoch, batch=self.trainer.batch)
        self.hub.publish(snapshot=snap)
        cost = time.perf_counter() - t0
        self.snap_cost = cost if self.snap_cost == 0 else 0.7 * self.snap_cost + 0.3 * cost
        self.last_snap = time.perf_counter()

    # ------------------------------------------------------------------ Callback
    def on_step_begin(self, trainer):
        if not self.tasks.empty():
            self._run_tasks()
        while self.paused and not self._stopping():
            self._run_tasks(block=0.2)

    def on_step_end(self, trainer, info):
        t0 = time.perf_counter()
        self._after_step(info)
        self.overhead += time.perf_counter() - t0

    def _after_step(self, info):
        if self.status == "starting":
            self.status, self.message = "running", "training"
        entry = (info.size, info.loss * info.size, info.correct)
        if len(self.window) == WINDOW:  # the oldest batch leaves the window
            self.sums = [s - o for s, o in zip(self.sums, self.window[0])]
        self.window.append(entry)
        self.sums = [s + e for s, e in zip(self.sums, entry)]
        a = 0.1 if self.fwd is not None else 1.0
        self.fwd = (1 - a) * (self.fwd or 0.0) + a * info.forward_seconds / info.size
        self.bwd = (1 - a) * (self.bwd or 0.0) + a * info.backward_seconds / info.size
        n = self.sums[0]
        self.hub.add_point(self.step, [self.step, self._examples_seen(), self.sums[1] / n, self.sums[2] / n])
        if time.perf_counter() - self.last_snap >= max(self.min_interval, self.snap_cost / self.budget):
            self._snapshot(self.probe.weight_gradients())
            self._publish(force=True)
        else:
            self._publish()

    def on_epoch_end(self, trainer):
        t0 = time.perf_counter()
        self._publish(force=True, history=True)
        self.overhead += time.perf_counter() - t0

    # ------------------------------------------------------------------ after training
    def finish(self, status, message):
        """Training is over (``done``, ``stopped``, ``diverged``): the final state, once more."""
        self.paused = False
        self.status, self.message = status, message
        try:
            self._snapshot(self.probe.weight_gradients())
        except (ValueError, FloatingPointError, ArithmeticError):  # a diverged network: keep the last one
            pass
        self._publish(force=True, history=True, urgent=True)

    def wait_until(self, stop):
        """Carries out the page's requests (classify, save) until ``stop()`` (Ctrl-C)."""
        while not stop():
            self._run_tasks(block=0.2)

    def close(self):
        self.closed = True
        while True:
            try:
                _, fut = self.tasks.get_nowait()
            except queue.Empty:
                break
            fut.cancel()
        self.hub.close()

    def _stopping(self):
        return self.should_stop is not None and self.should_stop()

    # ------------------------------------------------------------------ the page's requests
    def call(self, fn, timeout=60.0):
        """Runs ``fn()`` in the training thread at the next step boundary; returns its result."""
        if self.closed:
            raise ControlError("the server is stopping", 503)
        fut = concurrent.futures.Future()
        self.tasks.put((fn, fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.CancelledError:
            raise ControlError("the server is stopping", 503) from None
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise ControlError(f"training did not reach the end of a step within {timeout:g} s (evaluating the "
                               "test set?); nothing was changed: try again", 503) from None

    def _run_tasks(self, block=0.0):
        while True:
            try:
                fn, fut = self.tasks.get(timeout=block) if block else self.tasks.get_nowait()
            except queue.Empty:
                return
            block = 0.0
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting request, never raised here
                fut.set_exception(exc)

    def _training(self, what):
        if self.status not in ("starting", "running", "paused"):
            raise ControlError(f"training is {self.status}: {what} applies only while it runs", 409)

    def pause(self):
        self._training("pause")

        def do():
            self._training("pause")
            if not self.paused:
                self.paused, self.status, self.message = True, "paused", "paused from the page"
                self._snapshot(self.probe.weight_gradients())
                self._publish(force=True, urgent=True)
            return dict(paused=True, step=self.step)
        return self.call(do)

    def resume(self):
        self._training("resume")

        def do():
            self._training("resume")
            if self.paused:
                self.paused, self.status, self.message = False, "running", "training"
                self._publish(force=True, urgent=True)
            return dict(paused=False, step=self.step)
        return self.call(do)

    def set_hyperparameters(self, fields):
        values = check_hyperparameters(fields)  # before anything: a bad value changes nothing
        self._training("changing hyper-parameters")

        def do():
            self._training("changing hyper-parameters")
            self.trainer.set_hyperparameters(**values)
            self._publish(force=True, urgent=True)
            return dict(self.trainer.hyperparameters(), from_step=self.step + 1)
        return self.call(do)

    def select(self, index):
        index = check_index(index, len(self.probe.x))

        def do():
            self.selected = index
            self._snapshot(self.probe.weight_gradients() if self.step else None)
            self._publish(force=True, urgent=True)
            return dict(image=index, step=self.step)
        return self.call(do)

    def save_checkpoint(self):
        out = self.opts.get("out")
        if not out or self.save_fn is None:
            raise ControlError("this run writes nothing (--out ''): there is nowhere to save a checkpoint", 409)

        def do():
            t = self.trainer
            path = os.path.join(out, f"checkpoint-step{self.step}.npz")
            self.save_fn(path)
            where = (f"epoch {t.epoch + 1}, batch {t.batch} of {t.batches_per_epoch}" if t.batch
                     else f"the end of epoch {t.epoch}")
            self.saved.append(dict(path=path, step=self.step, where=where))
            self._publish(force=True, urgent=True)
            return dict(path=path, step=self.step, where=where)
        return self.call(do)

    def classify(self, data, invert=None):
        shape = self.probe.input_shape
        invert = self.invert_default if invert is None else bool(invert)
        x, note = decode_upload(data, shape, invert)  # in the request's thread: no model involved
        norm = self.meta.get("normalize") or {}
        mean = np.asarray(norm.get("mean", [0.0] * shape[0]), np.float32).reshape(-1, 1, 1)
        std = np.asarray(norm.get("std", [1.0] * shape[0]), np.float32).reshape(-1, 1, 1)
        p = self.call(lambda: self.probe.classify((x - mean) / std))
        classes = self.hub.info["classes"]
        order = np.argsort(-p, kind="stable")
        seen = np.rint(x.transpose(1, 2, 0) * 255).astype(np.uint8)
        return dict(note=note, invert=invert, step=self.step, image=encode_bytes(seen), shape=list(seen.shape),
                    top=[dict(cls=classes[i] if i < len(classes) else str(i), p=float(p[i])) for i in order[:5]])


def _clean(value):
    """JSON-safe copy: NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
