"""Why ``pyconv._core`` did not import, in one line: most often the source tree shadowing the
installed package (Python imports ``pyconv`` from the current directory first, and a clone has
no compiled extension unless it was installed with ``pip install -e .``), as numpy detects too.

Imports nothing of pyconv: it runs when the package itself failed to import.
"""
import importlib.machinery
import os
import sys


def _installed_elsewhere(source_package):
    """The directory of another pyconv on sys.path that has the compiled extension, or None."""
    for entry in sys.path:
        d = os.path.join(os.path.abspath(entry or os.curdir), "pyconv")
        if os.path.abspath(d) == source_package or not os.path.isdir(d):
            continue
        names = os.listdir(d)
        if any(n.startswith("_core") and n.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) for n in names):
            return d
    return None


def message(exc, package_dir):
    """The one-line explanation for ``exc`` raised by ``from . import _core`` in ``package_dir``."""
    package_dir = os.path.abspath(package_dir)
    root = os.path.dirname(package_dir)
    source = os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isdir(os.path.join(root, "cpp"))
    if not source:
        return ("pyconv's C++ extension pyconv._core is not built; install with `pip install .` (or `pip install -e .` "
                f"for development) ({exc})")
    other = _installed_elsewhere(package_dir)
    if other:
        return (f"you are importing pyconv from its source directory {root}, which shadows the installed pyconv "
                f"({other}) and has no compiled extension: run from another directory, or use `pip install -e .` to "
                "work in the source tree")
    return (f"you are importing pyconv from its source directory {root}, which has no compiled extension: install it "
            "with `pip install .` and run from another directory, or `pip install -e .` to work in the source tree")


def raise_for(exc, package_dir):
    """Raise ImportError with :func:`message`; under ``python -m pyconv`` exit with it as one line."""
    text = message(exc, package_dir)
    if sys.argv and sys.argv[0] == "-m":  # runpy is importing the package for `python -m pyconv ...`
        raise SystemExit(f"pyconv: error: {text}")
    raise ImportError(text) from exc
