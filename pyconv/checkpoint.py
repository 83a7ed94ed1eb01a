"""Checkpoints: model and optimiser state plus a JSON description, in one .npz file.

No pickled code: the file holds arrays (``model/<name>``, ``optim/<name>``) and a JSON string
(``meta``), so loading it with ``allow_pickle=False`` can never run anything. The meta carries
the model's layer list, input shape, classes and normalisation, so a checkpoint is enough to
rebuild the model (:func:`load_model`).
"""
import json
import os

import numpy as np

from .models import build_model
from .npzfile import read_npz

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "CheckpointError"]

FORMAT = "pyconv-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, model, optimizer=None, extra_arrays=None, **meta):
    """Write ``model`` (and ``optimizer``) state and the JSON-serialisable ``meta`` to ``path``,
    atomically (a temporary file renamed over ``path``).

    So that :func:`load_model` can rebuild the model, the meta needs ``model_spec`` (its layer
    list), ``input_shape`` (C, H, W) and ``num_classes``: ``pyconv train`` passes them; for a model
    built in Python from ``pyconv.nn`` layers (an ``nn.Sequential``) the layer list and the number
    of classes are derived, and ``input_shape`` must be given. A model that cannot be described is
    refused here, saying what to pass; ``model_spec=None`` stores the weights alone (then rebuild
    the model yourself and load ``load_checkpoint(path)["model"]``).
    ``extra_arrays`` ({name: array}) are stored beside them (``pyconv train``'s resume state).
    """
    path = os.fspath(path)
    state = model.state_dict()
    if "model_spec" not in meta:
        meta = dict(meta, **_describe(model, state, meta))
    if meta.get("model_spec") is not None and "dtype" not in meta:
        dtypes = {v.dtype.name for v in state.values() if v.dtype.kind == "f"}
        if dtypes == {"float64"}:
            meta["dtype"] = "float64"
    arrays = {f"model/{k}": np.asarray(v) for k, v in state.items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    for k, v in (extra_arrays or {}).items():
        arrays[f"extra/{k}"] = np.asarray(v)
    meta = dict(meta, format=FORMAT, version=VERSION)
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"save_checkpoint: the meta is not JSON-serialisable: {exc}") from None
    arrays["meta"] = np.array(text)
    tmp = path + ".tmp.npz"
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)  # never leave a half-written checkpoint behind
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _describe(model, state, meta):
    """model_spec / num_classes for a model built in Python, or CheckpointError saying what to pass."""
    from .models import ModelSpecError, spec_from_model

    last = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    num_classes = meta.get("num_classes", int(last[-1].shape[0]) if last else None)
    if "input_shape" not in meta:
        raise CheckpointError("save_checkpoint: pass input_shape=(C, H, W) (the size of one input image), so that "
                              "load_model can rebuild the model (or model_spec=None to store only the weights)")
    if num_classes is None:
        raise CheckpointError("save_checkpoint: pass num_classes= (the model has no Linear layer to read it from)")
    try:
        spec = spec_from_model(model, tuple(meta["input_shape"]), num_classes)
    except ModelSpecError as exc:
        raise CheckpointError(f"save_checkpoint: cannot describe the model for load_model: {exc}; pass "
                              "model_spec=[...] (its layer list, see pyconv.models) or model_spec=None to store only "
                              "the weights") from None
    out = {"model_spec": spec, "num_classes": num_classes}
    if "classes" not in meta:
        out["classes"] = [str(i) for i in range(num_classes)]
    return out


def load_checkpoint(path):
    """Returns ``{"model": {name: array}, "optim": {name: array}, "extra": {name: array}, "meta": dict}``.

    Every failure (missing, truncated or corrupted file, not an .npz, pickled arrays, not written
    by pyconv) is a :class:`CheckpointError` naming the file and what is wrong.
    """
    path = os.fspath(path)
    arrays = read_npz(path, "a pyconv checkpoint", CheckpointError)
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not a pyconv checkpoint: it has no 'meta' entry (arrays: "
                              f"{', '.join(sorted(arrays)[:6]) or 'none'})")
    raw = arrays.pop("meta")
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise CheckpointError(f"{path} is not a pyconv checkpoint: its 'meta' entry is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable meta ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} is not a pyconv checkpoint (format {fmt!r})")
    out = {"model": {}, "optim": {}, "extra": {}, "meta": meta}
    for k, v in arrays.items():
        group, _, name = k.partition("/")
        if group in ("model", "optim", "extra") and name:
            out[group][name] = v
    return out


def load_model(path):
    """Rebuild the model a checkpoint describes and load its weights; returns ``(model, meta)``."""
    path = os.fspath(path)
    ck = load_checkpoint(path)
    meta = ck["meta"]
    if "model_spec" in meta and meta["model_spec"] is None:
        raise CheckpointError(f"{path} holds weights without a model description (saved with model_spec=None): "
                              'rebuild the model in Python and load load_checkpoint(path)["model"] into it')
    for key in ("model_spec", "input_shape", "num_classes"):
        if key not in meta:
            raise CheckpointError(f"{path}: meta lacks {key!r}, which load_model needs to rebuild the model; save it "
                                  f"with save_checkpoint(path, model, input_shape=(C, H, W)) or `pyconv train`")
    try:
        model = build_model(meta["model_spec"], tuple(meta["input_shape"]), meta["num_classes"])
        if meta.get("dtype") == "float64":
            model.double()
        model.load_state_dict(ck["model"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its model description does not match its weights: {exc}") from None
    model.eval()
    return model, meta
