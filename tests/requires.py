"""Skip on a developer machine, fail in CI: tests that need something outside the package.

A test that needs a peer library (OpenCV, pyrtools) or the shared data directory is skipped,
with the reason, where that is missing, so that ``pytest`` passes on a machine without it.
In CI the same absence must not pass silently: with ``REQUIRE_PEERS=1`` a missing peer
library, and with ``REQUIRE_SHARED_DATA=1`` missing shared data, fails the test instead.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def skip_or_fail(reason: str, env: str) -> NoReturn:
    """Skip the calling test with ``reason``, or fail it when ``$env`` is ``1``.

    Parameters
    ----------
    reason : str
        What is missing and why the test needs it.
    env : str
        The environment variable that turns the skip into a failure
        (``REQUIRE_PEERS``, ``REQUIRE_SHARED_DATA``).
    """
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason}; {env}=1 makes this an error", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """Import ``name``, or skip the test (fail it under ``REQUIRE_PEERS=1``) if it is absent.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"cv2"`` or ``"pyrtools.pyramids.filters"``.
    reason : str
        Why the test needs it, e.g. ``"OpenCV is the reference for pyrDown/pyrUp"``.

    Returns
    -------
    module
        The imported module.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"{reason}: cannot import {name} ({exc})", "REQUIRE_PEERS")
