"""Reading a model file's bytes, with one error naming the file."""
from ..model_spec import ModelSpecError


def read_bytes(path):
    """The bytes of a model file; ModelSpecError naming it when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ModelSpecError(f"cannot read model file {path}: {exc.strerror}") from None
