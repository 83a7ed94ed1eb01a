"""Image files to model inputs (``pyconv predict``): any bit depth to [0, 1], resized, and said so.

8-bit images are divided by 255, 16-bit ones by 65535 (not clipped at 255, as converting them
to 8-bit gray would), float images are taken as [0, 1] when they lie there and otherwise scaled
from their own minimum and maximum. Transparent pixels are composited over white (a drawn digit
on a transparent background reads as dark strokes on white, as a scanned one does). The image is
then resized to the model's input with bilinear filtering; :func:`load_image` returns what it did.
"""
import numpy as np

__all__ = ["load_image", "prepare_image"]


def _to_unit(img):
    """(H, W, channels) float32 in [0, 1] from a PIL image of any mode, and a note on the depth."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, np.float32)[..., None] / 65535.0, "16-bit"
    if mode == "I":
        a = np.asarray(img, np.float64)
        if a.min() >= 0 and a.max() <= 65535:
            return (a / 65535.0).astype(np.float32)[..., None], "16-bit"
        lo, hi = float(a.min()), float(a.max())
        return ((a - lo) / (hi - lo or 1)).astype(np.float32)[..., None], f"32-bit integer, scaled from [{lo:g}, {hi:g}]"
    if mode == "F":
        a = np.asarray(img, np.float32)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo >= 0 and hi <= 1:
            return a[..., None], "float"
        return ((a - lo) / (hi - lo or 1)).astype(np.float32)[..., None], f"float, scaled from [{lo:g}, {hi:g}]"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        return np.asarray(rgb, np.float32) / 255.0, "8-bit, transparency over white"
    if mode == "1":
        return np.asarray(img.convert("L"), np.float32)[..., None] / 255.0, "1-bit"
    if mode in ("L", "RGB"):
        a = np.asarray(img, np.float32) / 255.0
        return (a[..., None] if a.ndim == 2 else a), "8-bit"
    return np.asarray(img.convert("RGB"), np.float32) / 255.0, f"8-bit ({mode} converted to RGB)"


def load_image(path, shape, invert=False):
    """``(x (C, H, W) float32 in [0, 1], note)`` for a model input of ``shape`` (C, H, W); the note
    says what the file was and what was done (``32x32 (HxW) 8-bit gray, resized to 8x8``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ValueError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"image {path} is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    return prepare_image(img, shape, invert)


def prepare_image(img, shape, invert=False):
    """:func:`load_image` for an opened and loaded PIL image (``pyconv train --serve``'s uploads)."""
    from PIL import Image

    c, h, w = shape
    a, depth = _to_unit(img)
    src_h, src_w, src_c = a.shape
    kind = "gray" if src_c == 1 else "color"
    steps = []
    if c == 1 and src_c == 3:
        a = (a @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]  # ITU-R 601 luma, as PIL's "L"
        steps.append("converted to gray")
    elif c == 3 and src_c == 1:
        a = np.repeat(a, 3, axis=2)
        steps.append("gray copied to 3 channels")
    elif c not in (1, 3):
        raise ValueError(f"the model takes {c}-channel inputs; pyconv predict reads gray (1) or color (3) images")
    if (src_h, src_w) != (h, w):
        planes = [np.asarray(Image.fromarray(a[..., i], mode="F").resize((w, h), Image.BILINEAR), np.float32)
                  for i in range(a.shape[2])]
        a = np.stack(planes, axis=2)
        squash = "" if src_h * w == src_w * h else ", squashed: aspect ratio changed"
        steps.append(f"resized to {h}x{w}{squash}")
    if invert:
        a = 1.0 - a
        steps.append("inverted")
    note = f"{src_h}x{src_w} (HxW) {depth} {kind}" + (", " + ", ".join(steps) if steps else "")
    return np.clip(a, 0, 1).transpose(2, 0, 1).astype(np.float32), note
