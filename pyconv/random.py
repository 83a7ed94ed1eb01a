"""pyconv's random number generator (weight init, dropout, data shuffling by default)."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator used for weight initialisation and dropout; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator():
    return _generator


def get_state():
    """The generator's state (a JSON-serialisable dict), for checkpoints that resume bitwise."""
    return _generator.bit_generator.state


def set_state(state):
    """Restore a state from :func:`get_state` (the same bit generator type)."""
    _generator.bit_generator.state = state
