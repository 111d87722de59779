"""The sample inputs of the blending demo, made from pictures that scikit-image ships.

``images/cat.png``, ``images/coffee.png`` and ``images/mask.png`` in the repository are these
arrays written as 8-bit PNGs (``pyramids figures`` writes them), so the default
``pyramids blend`` gives the same result from a checkout or from an installed package.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_images"]


def sample_images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two colour images of equal size and a mask, as ``uint8`` / ``bool`` arrays.

    Returns
    -------
    cat : ndarray, shape (300, 450, 3), uint8
        ``skimage.data.chelsea()`` cropped to an even width.
    coffee : ndarray, shape (300, 450, 3), uint8
        ``skimage.data.coffee()`` reduced to the same size by 4×4 → 3×3 area resampling.
    mask : ndarray, shape (300, 450), bool
        True on the left half (take the cat), False on the right (take the coffee).
    """
    from skimage import data, transform

    cat = data.chelsea()[:, :450]
    coffee = transform.resize(data.coffee(), (300, 450), anti_aliasing=True)
    coffee = np.round(coffee * 255).astype(np.uint8)
    mask = np.zeros((300, 450), dtype=bool)
    mask[:, :225] = True
    return cat, coffee, mask
