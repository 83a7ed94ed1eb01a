"""Hypothesis settings profiles for pyconv's property tests.

* ``ci`` (default): derandomized, a fixed budget that keeps tests/test_functional_properties.py near a
  minute on 2 cores.
* ``thorough``: ~20x the examples, randomized (new seeds each run), for local bug hunting.

Select with ``HYPOTHESIS_PROFILE=thorough pytest ...``, or with
``pytest --hypothesis-profile=thorough`` once this module is imported before pytest configures
its plugins (``import hypothesis_profiles`` in tests/conftest.py; the hypothesis plugin loads
the profile in ``pytest_configure``, i.e. before any test module is imported).

Test files import this module; it registers the profiles and, unless a profile was already
chosen on the command line, loads ``$HYPOTHESIS_PROFILE`` (default ``ci``).
"""
import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 60          # per @given test in the ci profile
THOROUGH_FACTOR = 20

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)

settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=CI_EXAMPLES * THOROUGH_FACTOR,
                          derandomize=False, **_COMMON)
settings.register_profile("dev", max_examples=10, derandomize=True, **_COMMON)

if settings.get_current_profile_name() == "default":   # not chosen by --hypothesis-profile
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(n):
    """A per-test budget of n ci-profile examples, scaled like the active profile."""
    scale = settings.default.max_examples / CI_EXAMPLES
    return max(1, int(round(n * scale)))
