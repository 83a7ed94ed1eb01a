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

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "CheckpointError"]

FORMAT = "pyconv-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, model, optimizer=None, **meta):
    """Write ``model`` (and ``optimizer``) state and the JSON-serialisable ``meta`` to ``path``."""
    arrays = {f"model/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    meta = dict(meta, format=FORMAT, version=VERSION)
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = os.fspath(path) + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def load_checkpoint(path):
    """Returns ``{"model": {name: array}, "optim": {name: array}, "meta": dict}``."""
    path = os.fspath(path)
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a pyconv checkpoint (.npz): {exc}") from None
    with f:
        if "meta" not in f.files:
            raise CheckpointError(f"{path} is not a pyconv checkpoint: it has no 'meta' entry")
        try:
            meta = json.loads(str(f["meta"]))
        except ValueError as exc:
            raise CheckpointError(f"{path}: unreadable meta ({exc})") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a pyconv checkpoint (format {meta.get('format')!r})")
        model = {k[len("model/"):]: f[k] for k in f.files if k.startswith("model/")}
        optim = {k[len("optim/"):]: f[k] for k in f.files if k.startswith("optim/")}
    return {"model": model, "optim": optim, "meta": meta}


def load_model(path):
    """Rebuild the model a checkpoint describes and load its weights; returns ``(model, meta)``."""
    ck = load_checkpoint(path)
    meta = ck["meta"]
    for key in ("model_spec", "input_shape", "num_classes"):
        if key not in meta:
            raise CheckpointError(f"{path}: meta lacks {key!r}; it was not written by `pyconv train`")
    model = build_model(meta["model_spec"], tuple(meta["input_shape"]), meta["num_classes"])
    model.load_state_dict(ck["model"])
    model.eval()
    return model, meta
