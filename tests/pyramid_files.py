"""Pyramid files in the layouts written before format version 1 (format version 0).

Written here from the layouts as they were, independently of the package's reader, so that
the tests can check that such files still open (tests/test_pyramid_protocol.py) and fuzz
them (tests/test_fuzz_pyramid_npz.py).
"""

from __future__ import annotations

import numpy as np


def version0_arrays(pyramid, bit_depth: int | None = 8) -> dict[str, np.ndarray]:
    """The arrays a version-0 ``pyramid.npz`` held for ``pyramid`` (any of the three kinds).

    Gaussian: ``kind``, ``boundary``, ``level<k>`` (the command line's layout, no kernel).
    Laplacian: ``kind``, ``kernel`` (float64), ``boundary``, ``band<k>``, ``residual``.
    Steerable: ``kind``, ``filters``, ``boundary``, ``engine``, ``rank_tol``, ``levels``,
    ``orientations``, ``highpass``, ``band_<level>_<orientation>``, ``residual``.
    The command line added ``bit_depth``.
    """
    arrays: dict[str, np.ndarray] = {
        "kind": np.array(pyramid.kind),
        "boundary": np.array(pyramid.boundary),
    }
    if pyramid.kind == "gaussian":
        arrays.update({f"level{k}": level for k, level in enumerate(pyramid)})
    elif pyramid.kind == "laplacian":
        arrays.update({f"band{k}": band for k, band in enumerate(pyramid.bands)})
        arrays.update(kernel=np.asarray(pyramid.kernel, np.float64), residual=pyramid.residual)
    else:
        arrays.update(
            filters=np.array(pyramid.filters.name),
            engine=np.array(pyramid.engine),
            rank_tol=np.array(pyramid.rank_tol),
            levels=np.array(pyramid.levels),
            orientations=np.array(pyramid.orientations),
            highpass=pyramid.highpass,
            residual=pyramid.residual,
        )
        for level, bands in enumerate(pyramid.bands):
            arrays.update({f"band_{level}_{k}": band for k, band in enumerate(bands)})
    if bit_depth is not None:
        arrays["bit_depth"] = np.array(bit_depth)
    return arrays
