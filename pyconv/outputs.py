"""Where commands write: checked before any long work starts, and written atomically.

``pyconv train --out DIR`` and ``pyconv bench --json FILE`` call :func:`prepare_dir` /
:func:`check_file_target` first, so that an existing regular file, a directory that cannot be
created or written, or a full disk is reported in one line before the first batch, not after
the last. Files are written to a temporary name in the same directory and renamed over the
target (:func:`write_atomic`), so an interruption never leaves a half-written file.
"""
import contextlib
import errno
import json
import os
import tempfile

__all__ = ["OutputError", "check_dir", "prepare_dir", "check_file_target", "write_atomic", "write_json", "atomic_path"]

_CHUNK = 1 << 20


class OutputError(ValueError):
    """An output location is unusable; the message names the option and the path."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_created(fd):
    """mkstemp makes 0600 files; give the result the mode open() would (0666 less the umask)."""
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass


def _reason(exc):
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


def _probe(directory, nbytes, what):
    """Create, fill with ``nbytes`` and remove a temporary file in ``directory``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".pyconv-probe-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in {directory}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            left = int(nbytes)
            block = bytes(min(_CHUNK, max(left, 1)))
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= len(block)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        need = f" (needs about {nbytes / 2**20:.1f} MiB)" if nbytes >= 2**20 else ""
        raise OutputError(f"{what}: cannot write in {directory}: {_reason(exc)}{need}") from None
    finally:
        try:
            os.remove(name)
        except OSError:
            pass


def check_dir(path, option="--out"):
    """The cheap check, creating nothing: ``path`` is a directory that can be written, or does not
    exist yet and its nearest existing parent is a writable directory."""
    path = os.fspath(path)
    what = f"{option} {path}"
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputError(f"{what}: exists and is not a directory")
        _probe(path, 0, what)
        return path
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise OutputError(f"{what}: cannot create the directory: {d} is not a directory")
    try:
        _probe(d, 0, what)
    except OutputError:
        raise OutputError(f"{what}: cannot create the directory: {d} is not writable") from None
    return path


def prepare_dir(path, nbytes=0, option="--out"):
    """Make sure ``path`` is a directory that can take ``nbytes`` of files; creates it (and its
    parents) if needed and removes what it created when the check fails. Returns the directories
    it created, innermost first (for :func:`remove_created` if nothing gets written after all)."""
    path = os.fspath(path)
    what = f"{option} {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{what}: exists and is not a directory")
    created = []
    d = os.path.abspath(path)
    while not os.path.exists(d):
        created.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{what}: cannot create the directory: {_reason(exc)}") from None
    try:
        _probe(path, nbytes, what)
    except OutputError:
        for d in created:  # innermost first: leave nothing behind
            try:
                os.rmdir(d)
            except OSError:
                break
        raise
    return created


def remove_created(created):
    """Remove the directories :func:`prepare_dir` created, if they are still empty."""
    for d in created:
        try:
            os.rmdir(d)
        except OSError:
            break


def check_file_target(path, option):
    """Make sure a file can be written at ``path`` (its directory exists and is writable)."""
    path = os.fspath(path)
    what = f"{option} {path}"
    if os.path.isdir(path):
        raise OutputError(f"{what}: is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{what}: directory {parent} does not exist")
    _probe(parent, 0, what)
    return path


def write_atomic(path, write):
    """``write(file)`` into a temporary file beside ``path``, then renamed over ``path``."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    _as_created(fd)
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_json(path, obj):
    write_atomic(path, lambda f: json.dump(obj, f, indent=1))


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file name beside ``path`` (same extension) to write to; renamed over ``path``
    when the block succeeds, removed when it fails."""
    path = os.fspath(path)
    root, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{root}.", suffix=f".tmp{ext}", dir=os.path.dirname(os.path.abspath(path)))
    _as_created(fd)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
