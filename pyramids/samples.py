"""The sample inputs of the demos, made from pictures that scikit-image ships.

``images/cat.png``, ``images/coffee.png`` and ``images/mask.png`` in the repository are these
arrays written as 8-bit PNGs (``pyramids figures`` writes them), so the default
``pyramids blend`` gives the same result from a checkout or from an installed package.
:func:`sample_video` makes the motion magnification demo's video from the same cat.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["SAMPLE_VIDEO_BAND", "SAMPLE_VIDEO_FPS", "sample_images", "sample_video"]

#: Frame rate of :func:`sample_video`, and a temporal band around its breathing.
SAMPLE_VIDEO_FPS = 30.0
SAMPLE_VIDEO_BAND = (1.0, 2.5)


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


def sample_video(
    frames: int = 120, *, amplitude: float = 0.25, frequency: float = 1.5
) -> Iterator[np.ndarray]:
    """A cat that breathes by a fraction of a pixel: the motion magnification demo's video.

    The cat of :func:`sample_images` (300 × 450), warped in every frame by a smooth radial
    displacement around the image's centre column, ``amplitude · sin(2π f t)`` pixels at
    most (a Gaussian bump of 60 pixels' standard deviation), at ``SAMPLE_VIDEO_FPS``: too
    small to see, and what ``pyramids magnify`` makes visible. Deterministic; frames are
    made one at a time (a generator).

    Parameters
    ----------
    frames : int
        Number of frames (120: four seconds).
    amplitude : float
        Largest displacement, in pixels.
    frequency : float
        Breathing rate, in Hz (inside ``SAMPLE_VIDEO_BAND``).

    Yields
    ------
    ndarray, shape (300, 450, 3), uint8
    """
    from scipy import ndimage

    cat = sample_images()[0].astype(np.float32)
    h, w = cat.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = 0.55 * h, 0.5 * w
    dy, dx = y - cy, x - cx
    radius = np.maximum(np.hypot(dy, dx), 1e-6)
    bump = np.exp(-(radius**2) / (2 * 60.0**2))  # displacement profile, 1 at the centre
    uy, ux = bump * dy / radius, bump * dx / radius  # outwards: a swelling
    for t in range(frames):
        d = amplitude * np.sin(2 * np.pi * frequency * t / SAMPLE_VIDEO_FPS)
        coords = [y - d * uy, x - d * ux]
        warped = np.stack(
            [ndimage.map_coordinates(cat[..., c], coords, order=3, mode="reflect")
             for c in range(3)],
            axis=-1,
        )  # fmt: skip
        yield np.clip(np.round(warped), 0, 255).astype(np.uint8)
