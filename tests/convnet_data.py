"""Where the convnet tests find the shared mnist-5k digits.

The directory is ``$CONVNET_TEST_DATA`` if set, else ``../shared/data/mnist-5k`` beside the
repository. When it is missing, tests that need it are skipped with the reason, unless
``REQUIRE_SHARED_DATA=1`` (as in CI), where a missing directory is a failure.
"""

import os
from pathlib import Path

from requires import skip_or_fail

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnist5k_dir() -> Path:
    """The mnist-5k directory, or skip (fail under ``REQUIRE_SHARED_DATA=1``) if absent."""
    override = os.environ.get("CONVNET_TEST_DATA")
    path = (
        Path(override)
        if override
        else Path(__file__).resolve().parents[2] / "shared/data/mnist-5k"
    )
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        reason = f"mnist-5k data not found at {path} (missing {', '.join(missing)})"
        skip_or_fail(reason, "REQUIRE_SHARED_DATA")
    return path
