"""Data sets and batching: the embedded 8x8 digits, CIFAR-10 from a local directory, any .npz.

Every loader returns ``(train, test)`` :class:`Dataset` pairs with images as float32 NCHW arrays
and labels as int64.
"""
import os
import pickle
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .npzfile import read_npz

__all__ = ["Dataset", "DataError", "load_digits", "load_cifar10", "load_npz", "load_dataset", "batches",
           "channel_stats", "normalize"]


class DataError(ValueError):
    """A data set is missing, malformed or inconsistent (the message says what to do)."""


class _NpzError(DataError):
    def __init__(self, message):
        super().__init__(f"npz: {message}")


@dataclass
class Dataset:
    x: np.ndarray  # (N, C, H, W) float32
    y: np.ndarray  # (N,) int64
    classes: list = field(default_factory=list)
    name: str = ""

    def __len__(self):
        return len(self.y)

    @property
    def image_shape(self):
        return tuple(self.x.shape[1:])

    def subset(self, n):
        """The first ``n`` examples (all if n is None)."""
        return self if n is None else Dataset(self.x[:n], self.y[:n], self.classes, self.name)


DIGIT_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def load_digits():
    """The embedded 8x8 digits (1,797 images, values scaled to [0, 1]); fixed 80/20 split (1438 train / 359 test)."""
    with resources.files("pyconv.datasets").joinpath("digits.npz").open("rb") as f:
        d = np.load(f, allow_pickle=False)
        images, labels = d["images"], d["labels"]
    x = (images.astype(np.float32) / 16.0)[:, None]
    y = labels.astype(np.int64)
    (xtr, ytr), (xte, yte) = _split(x, y, 0.2, seed=0)
    return Dataset(xtr, ytr, DIGIT_CLASSES, "digits"), Dataset(xte, yte, DIGIT_CLASSES, "digits")


class _CifarUnpickler(pickle.Unpickler):
    """Loads the CIFAR batch dicts (bytes, lists, numpy arrays) and refuses anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),  # bytes pickled by Python 3, protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


_CIFAR_HELP = ("download the CIFAR-10 python version (cifar-10-python.tar.gz, from Alex Krizhevsky's CIFAR page, "
               "www.cs.toronto.edu/~kriz/cifar.html), extract it, and pass --data-dir pointing at the "
               "cifar-10-batches-py folder that holds data_batch_1 ... data_batch_5 and test_batch")


def _cifar_batch(path):
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10: {path} is missing; {_CIFAR_HELP}") from None
    except Exception as exc:
        raise DataError(f"CIFAR-10: {path} is not a valid CIFAR-10 python batch ({exc}); {_CIFAR_HELP}") from None
    try:
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"CIFAR-10: {path} lacks the data/labels entries ({exc}); {_CIFAR_HELP}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"CIFAR-10: {path} has data of shape {data.shape} and {len(labels)} labels, expected "
                        f"(N, 3072) and N labels; {_CIFAR_HELP}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10: {path} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def load_cifar10(data_dir):
    """CIFAR-10 from a local ``cifar-10-batches-py`` directory (50,000 train / 10,000 test, 3x32x32)."""
    if data_dir is None:
        raise DataError(f"CIFAR-10 needs --data-dir: {_CIFAR_HELP}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"CIFAR-10: directory {data_dir!r} does not exist; {_CIFAR_HELP}")
    nested = os.path.join(data_dir, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(data_dir, "test_batch")) and os.path.isdir(nested):
        data_dir = nested
    parts = [_cifar_batch(os.path.join(data_dir, f"data_batch_{i}")) for i in range(1, 6)]
    xte, yte = _cifar_batch(os.path.join(data_dir, "test_batch"))
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    return (Dataset(xtr, ytr, CIFAR10_CLASSES, "cifar10"), Dataset(xte, yte, CIFAR10_CLASSES, "cifar10"))


def load_npz(path):
    """Arrays from an .npz: ``x`` (N, C, H, W) and ``y`` (N,) integer labels, plus optional
    ``x_test``/``y_test``; without them a fixed 20% of the examples is held out."""
    path = os.fspath(path) if path is not None else None
    if path is None:
        raise DataError("npz data set needs --data-dir pointing at an .npz file with arrays x (N, C, H, W) and y (N,)")
    arrays = read_npz(path, "an .npz data set", _NpzError)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"npz: {path} lacks array(s) {missing}; it has {sorted(arrays)}, expected x (N, C, H, W) "
                        "and y (N,)")

    def check(xk, yk):
        x, y = arrays[xk], arrays[yk]
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataError(f"npz: {xk} must be (N, C, H, W) (or (N, H, W)), got shape {x.shape}")
        if y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise DataError(f"npz: {yk} must be ({len(x)},) integer labels, got shape {y.shape} dtype {y.dtype}")
        if x.dtype.kind not in "fiu":
            raise DataError(f"npz: {xk} must be numeric, got dtype {x.dtype}")
        if len(x) == 0:
            raise DataError(f"npz: {path}: {xk} holds no images")
        if y.min() < 0:
            raise DataError(f"npz: {path}: {yk} holds negative labels (min {y.min()}); labels are 0 .. classes-1")
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"npz: {path}: {xk} holds NaN or infinite values ({int((~np.isfinite(x)).sum())} of them)")
        return x, y.astype(np.int64)

    x, y = check("x", "y")
    if "x_test" in arrays and "y_test" in arrays:
        xte, yte = check("x_test", "y_test")
        if xte.shape[1:] != x.shape[1:]:
            raise DataError(f"npz: x_test images {xte.shape[1:]} differ from x images {x.shape[1:]}")
    else:
        (x, y), (xte, yte) = _split(x, y, 0.2, seed=0)
    n_classes = int(max(y.max(initial=0), yte.max(initial=0))) + 1
    classes = [str(i) for i in range(n_classes)]
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(x, y, classes, name), Dataset(xte, yte, classes, name)


def load_dataset(name, data_dir=None):
    """``"digits"`` (embedded), ``"cifar10"`` (needs ``data_dir``) or ``"npz"`` (``data_dir`` is the file)."""
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name == "npz":
        return load_npz(data_dir)
    raise DataError(f"unknown dataset {name!r}; choose digits, cifar10 or npz")


def channel_stats(x):
    """Per-channel mean and standard deviation of NCHW images (float32)."""
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = x.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    return mean, np.where(std > 0, std, 1).astype(np.float32)


def normalize(x, mean, std):
    return ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)


def batches(x, y, batch_size, shuffle=False, rng=None):
    """Yields ``(x_batch, y_batch)`` of at most ``batch_size`` examples, shuffled by ``rng`` if asked."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = (rng or np.random.default_rng()).permutation(len(y)) if shuffle else np.arange(len(y))
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


class Augment:
    """Random training-time transforms of a batch, as the CS231n/ConvNetJS CIFAR-10 demo trains:
    each image shifted by up to ``shift`` pixels each way (the uncovered border zero, the mean
    after normalisation) and, with ``flip``, mirrored left-right with probability 1/2.

    ``Augment.parse("shift,flip")`` reads the ``--augment`` forms: ``none``, ``shift`` (2 pixels),
    ``shift=N``, ``flip``, comma-separated. Draws come from the ``rng`` passed per call.
    """

    def __init__(self, shift=0, flip=False):
        if not isinstance(shift, (int, np.integer)) or isinstance(shift, bool) or shift < 0:
            raise ValueError(f"Augment: shift must be an int >= 0, got {shift!r}")
        self.shift, self.flip = int(shift), bool(flip)

    @classmethod
    def parse(cls, text):
        shift, flip = 0, False
        for part in (p.strip().lower() for p in str(text).split(",")):
            if part in ("none", "") and str(text).strip().lower() in ("none", ""):
                continue
            name, _, value = part.partition("=")
            if name == "flip" and not value:
                flip = True
            elif name == "shift":
                try:
                    shift = int(value) if value else 2
                except ValueError:
                    shift = -1
                if shift < 1 or shift > 64:
                    raise ValueError(f"--augment: bad shift {part!r}: expected shift or shift=N with 1 <= N <= 64")
            else:
                raise ValueError(f"--augment: unknown transform {part!r}; use none, or shift (2 pixels), shift=N, "
                                 "flip, comma-separated (e.g. shift,flip)")
        return cls(shift, flip)

    def __bool__(self):
        return bool(self.shift or self.flip)

    def __str__(self):
        parts = ([f"shift={self.shift}"] if self.shift else []) + (["flip"] if self.flip else [])
        return ",".join(parts) or "none"

    def describe(self):
        parts = ([f"random shifts up to {self.shift} px"] if self.shift else []) + \
            (["horizontal flips"] if self.flip else [])
        return " and ".join(parts) or "no augmentation"

    def __call__(self, x, rng):
        n, _, h, w = x.shape
        out = x
        if self.shift:
            s = self.shift
            padded = np.zeros(x.shape[:2] + (h + 2 * s, w + 2 * s), x.dtype)
            padded[:, :, s:s + h, s:s + w] = x
            d = rng.integers(-s, s + 1, size=(n, 2))
            out = np.empty_like(x)
            for i in range(n):
                out[i] = padded[i, :, s + d[i, 0]:s + d[i, 0] + h, s + d[i, 1]:s + d[i, 1] + w]
        if self.flip:
            mirror = rng.random(n) < 0.5
            out = np.array(out, copy=True) if out is x else out
            out[mirror] = out[mirror][:, :, :, ::-1]
        return out
