"""Montage pictures of pyramids: the classic side-by-side figure and a grid of bands."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["band_to_display", "grid_montage", "lowpass_to_display", "pyramid_montage"]


def band_to_display(band: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Map a signed band-pass image to [0, 1] for display: zero is mid-grey.

    The scale is symmetric, ``0.5 + band / (2 s)`` with ``s`` the given percentile of
    ``|band|``, so the sign of every coefficient stays visible and a few outliers do not
    wash out the rest; the rare values beyond ``s`` saturate. Display only: the exact
    coefficients are what the ``.npz`` files keep.
    """
    scale = float(np.percentile(np.abs(band), percentile))
    if scale == 0:
        scale = float(np.abs(band).max())
    if scale == 0:
        return np.full_like(band, 0.5)
    return np.clip(0.5 + band / (2 * scale), 0.0, 1.0)


def lowpass_to_display(image: np.ndarray) -> np.ndarray:
    """Map a low-pass image of any range to [0, 1] for display: its minimum black, maximum white.

    A steerable pyramid's low-pass residual carries the gain of its low-pass filters (a DC
    gain of 2 per level: 8 after 3 levels, values from 0.25 to 6 on the grey cat), so
    clipping it to [0, 1] shows a white patch; stretched to its own range it looks like the
    blurred image it is. One range serves all channels, so colours keep their balance; a
    constant image becomes mid-grey.
    Display only: the ``.npz`` files keep the exact values.
    """
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if not high > low:
        return np.full_like(array, 0.5)
    return (array - low) / (high - low)


def _as_rgb(image: np.ndarray, colour: bool) -> np.ndarray:
    if colour and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image


def pyramid_montage(levels: Sequence[np.ndarray], background: float = 1.0) -> np.ndarray:
    """The classic pyramid figure: the first level on the left, the others stacked beside it.

    Parameters
    ----------
    levels : sequence of ndarray, shapes (h_k, w_k) or (h_k, w_k, c)
        Images already mapped to [0, 1], finest first.
    background : float
        Value of the empty canvas.

    Returns
    -------
    ndarray, shape (max(h_0, Σ_{k≥1} h_k), w_0 + w_1[, c])
    """
    colour = any(level.ndim == 3 for level in levels)
    levels = [_as_rgb(np.asarray(level, dtype=np.float64), colour) for level in levels]
    first, rest = levels[0], levels[1:]
    height = max(first.shape[0], sum(level.shape[0] for level in rest))
    width = first.shape[1] + (rest[0].shape[1] if rest else 0)
    canvas = np.full((height, width, *first.shape[2:]), background)
    canvas[: first.shape[0], : first.shape[1]] = first
    top = 0
    for level in rest:
        canvas[top : top + level.shape[0], first.shape[1] : first.shape[1] + level.shape[1]] = (
            level
        )
        top += level.shape[0]
    return canvas


def grid_montage(
    rows: Sequence[Sequence[np.ndarray]], gap: int = 2, background: float = 1.0
) -> np.ndarray:
    """Tile images row by row (e.g. steerable bands: levels as rows, orientations as columns).

    Parameters
    ----------
    rows : sequence of sequences of ndarray
        Images already mapped to [0, 1]; each is placed at the top left of its cell.
    gap : int
        Pixels between cells.
    background : float
        Value of the empty canvas.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, c)
    """
    colour = any(image.ndim == 3 for row in rows for image in row)
    rows = [[_as_rgb(np.asarray(im, dtype=np.float64), colour) for im in row] for row in rows]
    heights = [max(im.shape[0] for im in row) for row in rows]
    n_cols = max(len(row) for row in rows)
    widths = [
        max((row[j].shape[1] for row in rows if j < len(row)), default=0) for j in range(n_cols)
    ]
    height = sum(heights) + gap * (len(rows) - 1)
    width = sum(widths) + gap * (n_cols - 1)
    canvas = np.full((height, width, 3) if colour else (height, width), background)
    top = 0
    for row, row_height in zip(rows, heights):
        left = 0
        for image, col_width in zip(row, widths):
            canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
            left += col_width + gap
        top += row_height + gap
    return canvas
