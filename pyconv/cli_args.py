"""Command-line argument checking: every option validated up front, one line naming it.

argparse ``type=`` functions for numbers (finite, in range) and volumes, a help formatter that
shows every default, the ``--input``/``--layout`` reading of a volume, and the train options'
defaults (kept apart from argparse's, so that ``--resume`` can tell which were given).
"""
import argparse
import math

__all__ = ["HelpFormatter", "Parser", "positive_int", "nonnegative_int", "port_number", "positive_float", "nonnegative_float",
           "volume_triple", "LAYOUTS", "layout_arg", "read_volume", "TRAIN_DEFAULTS", "plural", "volume"]


def plural(n, word):
    """``1 epoch``, ``2 epochs``, ``1,438 images``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def volume(shape):
    """A volume as pyconv writes it everywhere: ``CxHxW`` (``3x32x32``), the arrays' own order."""
    return "x".join(str(int(d)) for d in shape)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` for every option: argparse's default, or for options whose real
    default depends on others (argparse default None) the ``shown_default`` set on the action."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is argparse.SUPPRESS:
            return text
        shown = getattr(action, "shown_default", None)
        if shown is not None:
            return f"{text} (default: {shown})"
        if action.default is None or isinstance(action.default, bool) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): `pyconv X: error: ...`, exit status 2, and
    every default shown in --help."""

    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **kw)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def nonnegative_int(text):
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def port_number(text):
    v = _int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 (any free port) to 65535, got {v}")
    return v


def _float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_float(text):
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def nonnegative_float(text):
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def volume_triple(text):
    """'3x32x32' or '3,32,32' -> (3, 32, 32): three sizes, their order decided by --layout."""
    parts = text.lower().replace(",", "x").replace("*", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected three sizes such as 3x32x32 (CxHxW)") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected three positive sizes such as 3x32x32 (CxHxW)")
    return sizes


LAYOUTS = {"chw": "chw", "cxhxw": "chw", "hwc": "hwc", "hxwxc": "hwc", "whd": "hwc", "wxhxd": "hwc"}


def layout_arg(text):
    v = LAYOUTS.get(text.lower())
    if v is None:
        raise argparse.ArgumentTypeError(f"unknown layout {text!r}: use chw (CxHxW, e.g. 3x32x32) or hwc "
                                         "(HxWxC, the lecture's 32x32x3)")
    return v


def read_volume(sizes, layout, describe, text=None):
    """(C, H, W) from the three ``--input`` sizes.

    ``layout`` ``"chw"`` or ``"hwc"`` decides. Without one, sizes are CxHxW, except the form
    ``NxNxD`` (two equal sizes, then another: 32x32x3, 7x7x512), which is how the lecture writes
    a square image depth last: that one is refused unless both readings give the same result,
    with a message showing both (``describe((C, H, W))`` says what a reading gives).
    """
    a, b, c = sizes
    text = text or "x".join(map(str, sizes))
    if layout == "chw":
        return (a, b, c)
    if layout == "hwc":
        return (c, a, b)
    if not (a == b and c != a):
        return (a, b, c)
    as_chw, as_hwc = describe((a, b, c)), describe((c, a, b))
    if as_chw == as_hwc:
        return (a, b, c)
    raise ValueError(f"--input {text} is ambiguous: read as CxHxW (C={a}, H={b}, W={c}) {as_chw}; read as the "
                     f"lecture's HxWxC (H={a}, W={b}, C={c}) {as_hwc}: add --layout chw or --layout hwc")


# The train options' real defaults; argparse's are None so that --resume sees what was given.
TRAIN_DEFAULTS = dict(dataset="digits", data_dir=None, model=None, epochs=12, batch_size=32, lr=None,
                      optimizer="adam", weight_decay=0.0, schedule="cosine", seed=0, train_size=None,
                      test_size=None, out="pyconv-run", augment=None)
# What --resume accepts beside it (they do not change the run's results).
RESUME_OPTIONS = ("threads", "quiet", "no_plots")
