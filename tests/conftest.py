"""Test-suite configuration: hypothesis runs the same cases on every machine.

Profiles (``hypothesis.settings``):

``deterministic`` (the default, what CI and a plain ``pytest`` run)
    ``derandomize=True``: the examples of each property test are drawn from a seed derived
    from the test itself, so every machine runs the same cases, in the same order, every
    time. ``database=None``: no ``.hypothesis/`` directory is read or written, so an earlier
    run cannot change what a later one draws. ``deadline=None``: no test fails for being
    slow on a loaded machine. 100 examples per property test (hypothesis' default).

``random`` (on demand)
    Fresh random examples on every run, 1,000 per property test, to look for new
    counterexamples::

        HYPOTHESIS_PROFILE=random python -m pytest tests/test_laplacian.py
        python -m pytest --hypothesis-profile=random tests/test_laplacian.py
        HYPOTHESIS_PROFILE=random HYPOTHESIS_MAX_EXAMPLES=5000 python -m pytest ...

    ``HYPOTHESIS_MAX_EXAMPLES`` overrides the number of examples of either profile. A test
    that fixes ``max_examples`` in its own ``@settings`` keeps that number in every profile,
    so property tests meant to scale leave it out. A failure prints the falsifying example
    (and a ``@reproduce_failure`` blob); add the example to the test as an explicit
    ``@example(...)``, so that the deterministic suite runs it from then on.
"""

import os

from hypothesis import settings

_EXAMPLES = os.environ.get("HYPOTHESIS_MAX_EXAMPLES")
_COMMON = {"database": None, "deadline": None, "print_blob": True}

settings.register_profile(
    "deterministic",
    derandomize=True,
    max_examples=int(_EXAMPLES) if _EXAMPLES else 100,
    **_COMMON,
)
settings.register_profile(
    "random",
    derandomize=False,
    max_examples=int(_EXAMPLES) if _EXAMPLES else 1000,
    **_COMMON,
)
# --hypothesis-profile (hypothesis' pytest option) is applied after this file is loaded
# and so takes precedence over the environment variable.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
