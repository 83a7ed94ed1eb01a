"""The page's controls as data: every POST body checked for type and range, every upload decoded
with limits, before anything reaches the training. Pure functions, no server, no model."""
import io
import json
import math
import warnings

__all__ = ["ControlError", "HYPERPARAMETERS", "MAX_JSON_BYTES", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS",
           "UPLOAD_FORMATS", "parse_json", "check_hyperparameters", "check_index", "decode_upload"]

MAX_JSON_BYTES = 4096
MAX_UPLOAD_BYTES = 8 << 20  # 8 MiB of file
MAX_UPLOAD_PIXELS = 4096 * 4096  # checked from the header, before any pixel is decoded
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")

# name: (lowest, highest, lowest included, highest included, what it is)
HYPERPARAMETERS = {
    "lr": (0.0, 10.0, False, True, "the learning rate"),
    "momentum": (0.0, 1.0, True, False, "the momentum (SGD's, or Adam's beta1)"),
    "weight_decay": (0.0, 1.0, True, True, "the L2 weight decay"),
}


class ControlError(ValueError):
    """A refused request: ``status`` is the HTTP status, the message is shown on the page."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def parse_json(body, allowed):
    """The JSON object in ``body`` (bytes) whose keys are all in ``allowed``."""
    if len(body) > MAX_JSON_BYTES:
        raise ControlError(f"the request body is {len(body):,} bytes; at most {MAX_JSON_BYTES:,}", 413)
    try:
        value = json.loads(body.decode("utf-8") or "{}", parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ControlError(f"the request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ControlError(f"expected a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ControlError(f"unknown field(s) {', '.join(unknown)}; valid: {', '.join(allowed) or 'none'}")
    return value


def _no_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _number(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ControlError(f"{name} must be a number, got {json.dumps(v)}")
    v = float(v)
    if not math.isfinite(v):
        raise ControlError(f"{name} must be finite, got {v}")
    return v


def check_hyperparameters(fields):
    """{name: float} for the given hyper-parameters, each a finite number in its range."""
    if not fields:
        raise ControlError(f"nothing to change: give one of {', '.join(HYPERPARAMETERS)}")
    out = {}
    for name, v in fields.items():
        lo, hi, lo_in, hi_in, what = HYPERPARAMETERS[name]
        v = _number(name, v)
        if v < lo or v > hi or (v == lo and not lo_in) or (v == hi and not hi_in):
            rng = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
            raise ControlError(f"{name} {v:g} refused: {what} must be in {rng}; nothing was changed")
        out[name] = v
    return out


def check_index(v, n):
    """An integer index into a sample of ``n`` images."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ControlError(f"image must be an integer, got {json.dumps(v)}")
    if not 0 <= v < n:
        raise ControlError(f"image {v} is out of range: the sample has {n} images (0 to {n - 1})")
    return v


def decode_upload(data, shape, invert):
    """``(x (C, H, W) in [0, 1], note)`` from an uploaded file, as ``pyconv predict`` reads it.

    Only PNG, JPEG, GIF, BMP and WEBP are decoded, at most 8 MiB and 4096x4096 pixels (the size is
    read from the header first), and any decoder failure is a refusal, never a crash.
    """
    from PIL import Image

    from ..images import prepare_image

    if not data:
        raise ControlError("the upload is empty: choose an image file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ControlError(f"the upload is {len(data):,} bytes; at most {MAX_UPLOAD_BYTES:,}", 413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ControlError(f"the image is {w}x{h} pixels; at most {MAX_UPLOAD_PIXELS:,} pixels", 413)
            img.load()
    except ControlError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ControlError(f"the image is too large ({exc}); at most {MAX_UPLOAD_PIXELS:,} pixels", 413) from None
    except Exception as exc:  # any decoder failure on untrusted bytes is a bad upload
        detail = str(exc).split("\n")[0][:200] or type(exc).__name__
        raise ControlError(f"cannot read the upload as a {', '.join(UPLOAD_FORMATS)} image: {detail}") from None
    try:
        return prepare_image(img, shape, invert)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
