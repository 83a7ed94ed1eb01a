"""Reading .npz files (checkpoints, data sets) so that every failure is one error naming the file.

``np.load`` alone reads an archive's arrays lazily, so a corrupted member fails later, outside
any error handling, as ``zipfile.BadZipFile`` or ``zlib.error``; and a text file gets numpy's
advice to pass ``allow_pickle=True``, which is what must never be done with a file of unknown
origin. :func:`read_npz` reads and verifies every array at once, with pickles refused.
"""
import os
import zipfile
import zlib

import numpy as np

__all__ = ["read_npz"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive's end record
_NPY_MAGIC = b"\x93NUMPY"


def _kind(head):
    """What a file that is not a zip archive looks like, from its first bytes."""
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array"
    if head.startswith(b"\x80") or head.startswith(b"\x00"):
        return "a binary file (a pickle, or some other format)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return "a binary file"


def read_npz(path, what, error=ValueError):
    """Every array of the .npz archive at ``path``, read and checked, as ``{name: ndarray}``.

    ``what`` names the expected content for messages ("a pyconv checkpoint", "an .npz data
    set"); failures raise ``error`` (a ValueError subclass) with one line naming the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not {what} (.npz)") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise error(f"{path} is empty, not {what} (.npz)")
    if not head.startswith(_ZIP_MAGIC):
        raise error(f"{path} is not {what}: it is {_kind(head)}, not an .npz archive")
    arrays, pickled, damaged = {}, None, None
    try:
        with np.load(path, allow_pickle=False) as f:
            for name in f.files:
                try:
                    v = f[name]
                except ValueError as exc:
                    if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                        pickled = name
                        break
                    raise
                if not isinstance(v, np.ndarray):
                    damaged = f"member {name!r} is not a numpy array"
                    break
                arrays[name] = v
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc) or type(exc).__name__
        damaged = f"{reason} (the file is truncated or corrupted)"
    if pickled is not None:
        raise error(f"{path} is not {what}: its array {pickled!r} holds Python objects (pickled data), "
                    "which pyconv never loads")
    if damaged is not None:
        raise error(f"{path} is damaged: {damaged}")
    return arrays
