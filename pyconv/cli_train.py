"""``pyconv train``: everything checked before the first batch, nothing lost after it.

Options, the data, the model (it must end in one score per class) and the output directory are
all checked before training starts. After every epoch the checkpoint (with the state that
``--resume`` needs), ``best.npz`` (the best test accuracy so far) and ``metrics.json`` are written
atomically. SIGINT (Ctrl-C) or SIGTERM finishes the batch in progress, writes the checkpoint,
metrics and plots so far, prints how to resume and exits 130 (SIGINT) or 143 (SIGTERM); a second
Ctrl-C stops at once (the last epoch's checkpoint stays). A loss that becomes NaN or infinite
stops the run with exit 1, keeping the checkpoint of the last good epoch.
"""
import os
import signal
import sys
import threading
import time

import numpy as np

from . import _runtime, data, viz
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .cli_args import RESUME_OPTIONS, TRAIN_DEFAULTS, plural, volume
from .models import build_classifier, build_model, describe_source, spec_for, spec_notes
from .outputs import OutputError, atomic_path, check_dir, prepare_dir, remove_created, write_json
from .random import manual_seed
from .train import Trainer, TrainingDiverged, describe_schedule, make_optimizer, make_schedule

CHECKPOINT, BEST, METRICS = "checkpoint.npz", "best.npz", "metrics.json"
PLOTS = ("curves.png", "filters.png", "activations.png")
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _Bar:
    """A tqdm bar per epoch showing loss, accuracy and images/s, removed when the epoch ends
    (its row of the table replaces it)."""

    def __init__(self, epoch, epochs, total, done, enabled):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                        disable=not enabled, dynamic_ncols=True, file=sys.stderr)

    def update(self, loss, acc, ips):
        self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.3f} {ips:,.0f} img/s", refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


class _Signals:
    """SIGINT/SIGTERM set a flag that the loop reads after each batch; a second SIGINT raises
    KeyboardInterrupt at once. Handlers are installed only in the main thread."""

    def __init__(self, second_stops_at_once=True):
        self.signum = None
        self.saved = {}
        self.second_stops_at_once = second_stops_at_once

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT and self.second_stops_at_once:
            raise KeyboardInterrupt
        self.signum = signum

    def __call__(self):
        return self.signum is not None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in EXIT_SIGNAL:
                self.saved[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)
        return False


def _table_head():
    head = (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test loss':>9}  {'test acc':>8}  "
            f"{'seconds':>7}  {'img/s':>8}")
    return f"{head}\n{'-' * len(head)}"


def _table_row(h):
    return (f"{h['epoch']:>5}  {h['train_loss']:>10.4f}  {h['train_accuracy']:>9.4f}  {h['test_loss']:>9.4f}  "
            f"{h['test_accuracy']:>8.4f}  {h['seconds']:>7.2f}  {h['images_per_second']:>8,.0f}")


def _given(args):
    return [k for k in TRAIN_DEFAULTS if getattr(args, k, None) is not None]


def _option(name):
    return "--" + name.replace("_", "-")


def _resolve(args):
    """The run's options from the command line (defaults filled in), checked before any work."""
    opts = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in TRAIN_DEFAULTS.items()}
    if opts["dataset"] == "digits" and opts["data_dir"] is not None:
        raise ValueError(f"--data-dir {opts['data_dir']} is only read with --dataset cifar10 or npz; the digits are "
                         "embedded in pyconv: drop --data-dir")
    if opts["data_dir"] is not None:
        opts["data_dir"] = os.path.abspath(opts["data_dir"])  # a checkpoint must work from any directory
    if opts["augment"] is None:
        opts["augment"] = "shift,flip" if opts["dataset"] == "cifar10" else "none"
    opts["augment"] = str(data.Augment.parse(opts["augment"]))
    opts["model"] = opts["model"] or ("digits-cnn" if opts["dataset"] == "digits" else "convnetjs-cifar")
    if opts["lr"] is None:
        opts["lr"] = 1e-3 if opts["optimizer"] == "adam" else 0.05
    return opts


def _unfinished(out):
    """The meta of an unfinished run in ``out``, or None."""
    path = os.path.join(out, CHECKPOINT)
    if not os.path.isfile(path):
        return None
    try:
        meta = load_checkpoint(path)["meta"]
    except CheckpointError:
        return None
    state = meta.get("train_state")
    return meta if state and state["epoch"] < meta.get("epochs", 0) else None


def _where(meta):
    """Where a saved run stopped: ``epoch 4 of 6, batch 12 of 45`` or ``the end of epoch 3 of 6``."""
    st, epochs = meta["train_state"], meta["epochs"]
    if st["batch"]:
        per_epoch = -(-meta["data_sizes"][0] // meta["run"]["batch_size"])
        return f"epoch {st['epoch'] + 1} of {epochs}, batch {st['batch']} of {per_epoch}"
    return f"the end of epoch {st['epoch']} of {epochs}"


def _load_data(opts):
    train, test = data.load_dataset(opts["dataset"], opts["data_dir"])
    train, test = train.subset(opts["train_size"]), test.subset(opts["test_size"])
    mean, std = data.channel_stats(train.x)
    train = data.Dataset(data.normalize(train.x, mean, std), train.y, train.classes, train.name)
    test = data.Dataset(data.normalize(test.x, mean, std), test.y, test.classes, test.name)
    return train, test, mean, std


def _open_server(args):
    """The ``--serve`` page's server, bound before any long work (a port in use is one line), or None."""
    host, port = getattr(args, "host", None), getattr(args, "port", None)
    if not getattr(args, "serve", False):
        given = [name for name, v in (("--host", host), ("--port", port)) if v is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} only apply with --serve: add --serve, or drop "
                             f"{'them' if len(given) > 1 else 'it'}")
        return None
    from .serve import is_loopback, open_server

    host = host or "127.0.0.1"
    server = open_server(host, 8000 if port is None else port)
    if not is_loopback(host):
        print(f"pyconv train: warning: --host {host} makes the live page reachable from other machines: anyone who can "
              "reach it sees the run, and the page's controls (with the token it carries) can pause it, change its "
              "learning rate and write checkpoints; use it only on a network you trust", file=sys.stderr, flush=True)
    return server


def run(args):
    group = _join_group(args)
    server = _open_server(args)
    try:
        return _run(args, server, group)
    finally:
        if server is not None:
            server.close()
        if group is not None:
            group.close()


def _join_group(args):
    """The data-parallel group when torchrun started this process (WORLD_SIZE > 1), else None.
    Ranks other than 0 write nothing and print only errors."""
    from . import distributed  # torch is imported only when a group is joined

    if distributed.world_size() <= 1:
        return None
    if getattr(args, "serve", False):
        raise ValueError("--serve cannot watch a data-parallel run (started by torchrun): the page pauses and changes "
                         "one process; run it without torchrun, or drop --serve")
    group = distributed.Group.join()
    if group is not None and group.rank != 0:
        args.quiet = True
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    return group


def _run(args, server, group=None):
    if args.resume:
        return _resume(args, server, group)
    opts = _resolve(args)
    if group is not None and group.rank != 0:
        opts["out"] = None
    out = opts["out"]
    if out:
        check_dir(out)
        old = _unfinished(out)
        if old is not None:
            raise ValueError(f"--out {out} holds an unfinished run (stopped at {_where(old)}): continue it with "
                             f"`pyconv train --resume {out}`, or choose another --out (or delete {out})")
    if args.threads is not None:
        _runtime.set_num_threads(args.threads)
    train, test, mean, std = _load_data(opts)
    spec = spec_for(opts["model"])
    for note in spec_notes(spec):  # what a Caffe / ConvNetJS file's translation left out
        print(f"pyconv train: note: {note}", file=sys.stderr)
    manual_seed(opts["seed"])
    model = build_classifier(spec, train.image_shape, len(train.classes), describe_source(opts["model"]),
                             train.name)
    optimizer = make_optimizer(opts["optimizer"], model.parameters(), opts["lr"], weight_decay=opts["weight_decay"])
    schedule = make_schedule(opts["schedule"], optimizer, opts["epochs"])
    trainer = Trainer(model, train, test, opts["epochs"], optimizer, opts["batch_size"], opts["seed"], schedule,
                      data.Augment.parse(opts["augment"]) or None, group=group)
    meta = dict(model_name=opts["model"], model_spec=spec, input_shape=list(train.image_shape),
                num_classes=len(train.classes), classes=list(train.classes), dataset=opts["dataset"],
                data_dir=opts["data_dir"], normalize=dict(mean=mean.tolist(), std=std.tolist()),
                optimizer_name=opts["optimizer"], epochs=opts["epochs"], seed=opts["seed"], run=opts,
                data_sizes=[len(train), len(test)])
    created = []
    if out:
        slots = 3 if opts["optimizer"] == "adam" else 2
        created = prepare_dir(out, nbytes=2 * 4 * slots * model.num_parameters() + (4 << 20))
    code = 1
    try:
        code = _train(args, opts, meta, model, optimizer, trainer, server)
        return code
    finally:
        if code:
            remove_created(created)  # only while still empty: a run that saved nothing leaves no directory


def _resume(args, server=None, group=None):
    out = args.resume
    extra = [k for k in _given(args) if k not in RESUME_OPTIONS]
    if extra:
        names = ", ".join(_option(k) for k in extra)
        raise ValueError(f"--resume continues the run in {out} with the options it was started with; drop {names} "
                         "(or start a new run with another --out)")
    if not os.path.isdir(out):
        raise ValueError(f"--resume {out}: no such directory")
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise ValueError(f"--resume {out}: it has no {CHECKPOINT} to continue from")
    ck = load_checkpoint(path)
    meta = ck["meta"]
    if "train_state" not in meta or "run" not in meta:
        raise ValueError(f"--resume {out}: {path} holds no training state to continue from (it was not written by "
                         "this version of pyconv train)")
    st = meta["train_state"]
    if st["epoch"] >= meta["epochs"]:
        raise ValueError(f"--resume {out}: the run there is finished ({plural(meta['epochs'], 'epoch')}); nothing to "
                         "resume")
    check_dir(out, option="--resume")
    opts = meta["run"]
    if args.threads is not None:
        _runtime.set_num_threads(args.threads)
    if opts["data_dir"] is not None and not os.path.exists(opts["data_dir"]):
        raise ValueError(f"--resume {out}: the run was trained on {opts['data_dir']}, which does not exist any more")
    train, test, mean, std = _load_data(opts)
    if [len(train), len(test)] != meta["data_sizes"] or mean.tolist() != meta["normalize"]["mean"] or \
            std.tolist() != meta["normalize"]["std"]:
        raise ValueError(f"--resume {out}: the {opts['dataset']} data set is not the one the run started with "
                         f"({len(train)} / {len(test)} images now, {meta['data_sizes'][0]} / {meta['data_sizes'][1]} "
                         "then, or different pixel statistics)")
    model = build_model(meta["model_spec"], tuple(meta["input_shape"]), meta["num_classes"])
    model.load_state_dict(ck["model"])
    optimizer = make_optimizer(opts["optimizer"], model.parameters(), opts["lr"], weight_decay=opts["weight_decay"])
    optimizer.load_state_dict(ck["optim"])
    schedule = make_schedule(opts["schedule"], optimizer, opts["epochs"])
    trainer = Trainer(model, train, test, opts["epochs"], optimizer, opts["batch_size"], opts["seed"], schedule,
                      data.Augment.parse(opts["augment"]) or None, group=group)
    trainer.load_state(st, ck["extra"])
    if group is not None and group.rank != 0:
        opts = dict(opts, out=None)
    meta = {k: v for k, v in meta.items() if k not in ("train_state", "history", "format", "version")}
    print(f"pyconv train: resuming {out} from {_where(ck['meta'])}", flush=True)
    return _train(args, opts, meta, model, optimizer, trainer, server)


def _header(opts, trainer, model):
    train, test = trainer.train_set, trainer.test_set
    aug = data.Augment.parse(opts["augment"])
    return (f"pyconv train: {train.name} ({len(train):,} train / {len(test):,} test images, "
            f"{volume(train.image_shape)} CxHxW), model {opts['model']} ({model.num_parameters():,} parameters), "
            f"{opts['optimizer']}, {describe_schedule(opts['schedule'], opts['lr'], opts['epochs'])}, "
            f"{plural(opts['epochs'], 'epoch')}, batch {opts['batch_size']}, {aug.describe()}, "
            f"{plural(_runtime.get_num_threads(), 'thread')}"
            + (f" per process, {trainer.group.describe()}" if trainer.group is not None else ""))


def _train(args, opts, meta, model, optimizer, trainer, server=None):
    out = opts["out"]
    print(_header(opts, trainer, model), flush=True)
    best = max([h["test_accuracy"] for h in trainer.history] or [-1.0])

    def state_meta():
        state, arrays = trainer.state()
        return dict(meta, history=trainer.history, train_state=state, finished=trainer.finished), arrays

    def save(path, with_state=True):
        m, arrays = state_meta()
        if not with_state:
            m = {k: v for k, v in m.items() if k != "train_state"}
            m["best_epoch"] = trainer.epoch
        try:
            save_checkpoint(path, model, optimizer if with_state else None, extra_arrays=arrays if with_state else None,
                            **m)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}; the previous checkpoint is kept") from None

    def write_metrics():
        last = trainer.history[-1] if trainer.history else None
        try:
            write_json(os.path.join(out, METRICS), dict(
                epochs=trainer.history, dataset=opts["dataset"], model=opts["model"], seed=opts["seed"],
                seconds=sum(h["seconds"] for h in trainer.history), parameters=model.num_parameters(),
                finished=trainer.finished, test_accuracy=last["test_accuracy"] if last else None))
        except OSError as exc:
            raise OutputError(f"cannot write {os.path.join(out, METRICS)}: {exc.strerror or exc}") from None

    def on_epoch(t):
        nonlocal best
        print(_table_row(t.history[-1]), flush=True)
        if not out:
            return
        save(os.path.join(out, CHECKPOINT))
        if t.history[-1]["test_accuracy"] > best:
            best = t.history[-1]["test_accuracy"]
            save(os.path.join(out, BEST), with_state=False)
        write_metrics()

    stop = _Signals()
    session = None
    if server is not None:  # the live page: a Trainer callback, and a server thread reading what it publishes
        from .serve import attach

        session = attach(server, trainer, meta, opts, save=save, should_stop=stop, header=_header(opts, trainer, model))
        print(f"pyconv train: watch it learn at {server.url} (the page stays up after training, until Ctrl-C)",
              flush=True)
    print(_table_head())
    for h in trainer.history:
        print(_table_row(h))
    sys.stdout.flush()
    t0 = time.perf_counter()
    try:
        with stop:
            result = trainer.run(lambda e, n, done: _Bar(e, opts["epochs"], n, done, not args.quiet), on_epoch, stop,
                                 callbacks=[session] if session else ())
    except TrainingDiverged as exc:
        kept = (f"{os.path.join(out, CHECKPOINT)} keeps epoch {trainer.epoch}" if out and trainer.epoch
                else "no checkpoint was written")
        if out and trainer.history and not args.no_plots:
            _plots(out, opts, model, trainer)
        print(f"pyconv train: error: {exc} (lr {optimizer.lr:g}); {kept}: try a smaller --lr", file=sys.stderr)
        if session is not None:
            _serve_until_ctrl_c(session, server, "diverged", f"{exc}; {kept}")
        return 1
    except KeyboardInterrupt:
        kept = (f"{os.path.join(out, CHECKPOINT)} keeps epoch {trainer.epoch}; resume with: pyconv train --resume {out}"
                if out and trainer.epoch else "nothing was saved")
        print(f"pyconv train: stopped at once (second Ctrl-C); {kept}", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - t0
    written = []
    if out:
        if result == "stopped" and trainer.order is not None:  # the epoch in progress (begun, or drawn and
            # stopped before its first batch by a pause): its state, to resume there
            save(os.path.join(out, CHECKPOINT))
            write_metrics()
        written = [CHECKPOINT] + ([BEST] if os.path.exists(os.path.join(out, BEST)) else []) + [METRICS]
        if trainer.history and not args.no_plots:
            written += _plots(out, opts, model, trainer)
    if result == "stopped":
        name = signal.Signals(stop.signum).name
        where = (f"epoch {trainer.epoch + 1}, batch {trainer.batch} of {trainer.batches_per_epoch}" if trainer.batch
                 else f"the end of epoch {trainer.epoch}")
        saved = (f"saved {', '.join(written)} to {out}; resume with: pyconv train --resume {out}" if out
                 else "nothing saved (--out '')")
        print(f"pyconv train: {name} at {where} of {opts['epochs']}; {saved}", file=sys.stderr, flush=True)
        if session is not None:
            session.finish("stopped", f"{name} at {where} of {opts['epochs']}")
        return EXIT_SIGNAL[stop.signum]
    final = trainer.history[-1]["test_accuracy"]
    print(f"test accuracy {final:.4f} after {plural(opts['epochs'], 'epoch')} in {elapsed:.1f} s")
    if out:
        print(f"wrote {', '.join(written)} to {out}")
    if session is not None:
        _serve_until_ctrl_c(session, server, "done", "done; serving until Ctrl-C")
    return 0


def _serve_until_ctrl_c(session, server, status, message):
    """Training is over: the page keeps showing the run (and classifying uploads) until SIGINT/SIGTERM."""
    # The handlers go in before the line that invites a Ctrl-C, or an early one would raise.
    with _Signals(second_stops_at_once=False) as again:  # nothing left to lose: every Ctrl-C ends it cleanly
        session.finish(status, message)
        print(f"pyconv train: {status}; serving {server.url} until Ctrl-C", flush=True)
        session.wait_until(again)
    print("pyconv train: stopped serving", flush=True)


def _plots(out, opts, model, trainer):
    """curves.png, filters.png, activations.png (each written atomically); returns their names."""
    h = trainer.history
    acc = h[-1]["test_accuracy"]
    done = "" if trainer.finished else f" (stopped after {plural(trainer.epoch, 'epoch')} of {opts['epochs']})"
    title = f"{opts['model']} on {trainer.train_set.name}: test accuracy {acc:.4f} after epoch {h[-1]['epoch']}{done}"
    test = trainer.test_set
    try:
        with atomic_path(os.path.join(out, PLOTS[0])) as p:
            viz.plot_history(h, p, title=title)
        with atomic_path(os.path.join(out, PLOTS[1])) as p:
            viz.save_filters(model, p, title=f"{opts['model']} first-layer filters")
        if len(test):
            from .tensor import Tensor, no_grad

            model.eval()
            with no_grad():
                pred = int(np.argmax(model(Tensor(test.x[:1])).data[0]))
            with atomic_path(os.path.join(out, PLOTS[2])) as p:
                viz.save_activations(model, test.x[0], p, label=test.classes[test.y[0]], prediction=test.classes[pred],
                                     title=f"{opts['model']} (test accuracy {acc:.4f}): activation maps of every conv "
                                           "layer for one test image")
            return list(PLOTS)
    except OSError as exc:
        raise OutputError(f"cannot write the plots in {out}: {exc.strerror or exc}") from None
    return list(PLOTS[:2])
