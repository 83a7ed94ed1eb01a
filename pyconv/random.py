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
