import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import pyconv  # noqa: E402


@pytest.fixture(params=[1, 2], ids=lambda t: f"t{t}")
def threads(request):
    old = pyconv.get_num_threads()
    pyconv.set_num_threads(request.param)
    yield request.param
    pyconv.set_num_threads(old)
