"""Random affine distortions of digit images, vectorised over the batch.

LeCun et al. (1998) enlarged MNIST with small random affine distortions; here every image
gets its own rotation, scale and shift about the image centre, and the whole batch is
resampled with one bilinear gather (no loop over images or pixels).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["MAX_SHEAR", "check_distortions", "random_affine", "warp_affine"]


def warp_affine(
    images: np.ndarray,
    matrices: np.ndarray,
    offsets: np.ndarray,
    order: int = 1,
    displacement: np.ndarray | None = None,
) -> np.ndarray:
    """Resample each image at ``src = A · (dst - c) + c + t`` with bilinear interpolation.

    Parameters
    ----------
    images : ndarray, shape (N, H, W), float32 or float64
        Background must be 0 (pixels outside the image read as 0).
    matrices : ndarray, shape (N, 2, 2)
        Per-image maps from output ``(row, col)`` offsets to input offsets.
    offsets : ndarray, shape (N, 2)
        Per-image shifts ``t`` (rows, cols) in pixels, in input coordinates.
    order : {0, 1}
        0 for nearest-neighbour sampling, 1 for bilinear.
    displacement : ndarray, shape (N, 2, H, W), optional
        A further per-pixel offset of the sampling position (an elastic distortion).

    Returns
    -------
    ndarray, shape (N, H, W), dtype of ``images``
    """
    n, h, w = images.shape
    dtype = images.dtype
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    rr, cc = np.meshgrid(np.arange(h) - c[0], np.arange(w) - c[1], indexing="ij")
    grid = np.stack([rr.ravel(), cc.ravel()]).astype(np.float32)  # (2, H·W)
    # float32 coordinates are exact to ~1e-5 px here, and twice as fast to compute.
    src = np.asarray(matrices, np.float32) @ grid
    src += (c + offsets).astype(np.float32)[:, :, None]  # (N, 2, H·W)
    if displacement is not None:
        src += displacement.reshape(n, 2, h * w)
    # Pad by one zero pixel on each side so that every bilinear neighbour of a clipped
    # coordinate is a valid index and the outside reads as background.
    padded = np.zeros((n, h + 2, w + 2), dtype=dtype)
    padded[:, 1:-1, 1:-1] = images
    # Clipping to h + 1 (not h) sends far-outside points to the zero margin rather than
    # to the last image row.
    y = np.clip(src[:, 0] + 1, 0, h + 1).astype(dtype, copy=False)
    x = np.clip(src[:, 1] + 1, 0, w + 1).astype(dtype, copy=False)
    if order == 0:
        y0 = np.rint(y).astype(np.int32)
        x0 = np.rint(x).astype(np.int32)
        base = (np.arange(n, dtype=np.int32) * ((h + 2) * (w + 2)))[:, None] + y0 * (w + 2) + x0
        return padded.reshape(-1)[base].reshape(n, h, w)
    y0 = np.minimum(y.astype(np.int32), h)
    x0 = np.minimum(x.astype(np.int32), w)
    fy, fx = y - y0, x - x0
    base = (np.arange(n, dtype=np.int32) * ((h + 2) * (w + 2)))[:, None] + y0 * (w + 2) + x0
    flat = padded.reshape(-1)
    top = flat[base]
    top += (flat[base + 1] - top) * fx
    bottom = flat[base + (w + 2)]
    bottom += (flat[base + (w + 3)] - bottom) * fx
    top += (bottom - top) * fy
    return top.reshape(n, h, w)


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)`` matrix of a normalised 1-D Gaussian filter, zero boundary."""
    d = np.arange(size)[:, None] - np.arange(size)[None, :]
    return (np.exp(-0.5 * (d / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))).astype(np.float32)


#: The largest slant :func:`random_affine` takes: 1 moves a row by its own height (45°).
MAX_SHEAR = 1.0


def check_distortions(
    shape: tuple[int, int],
    *,
    rotation: float,
    scale: float,
    shift: float,
    shear: float,
    squeeze: float,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> None:
    """Raise ``ValueError`` naming the first distortion range of :func:`random_affine` that
    is not a number in its range for images of ``shape`` ``(H, W)``.

    Every range is finite and ≥ 0; ``rotation`` at most 180 degrees; ``scale`` and
    ``squeeze`` below 1 (a factor ``1 - scale`` must stay positive); ``shift`` at most the
    image's longer side (further, the picture leaves the frame whatever the draw);
    ``shear`` at most :data:`MAX_SHEAR`; ``elastic_sigma`` positive where
    ``elastic_alpha`` is.
    """
    # name: (value, bound, whether the bound itself is refused, what the bound is)
    limits = {
        "rotation": (rotation, 180.0, False, "at most 180 (degrees)"),
        "scale": (scale, 1.0, True, "below 1"),
        "shift": (shift, float(max(shape)), False, f"at most {max(shape)} (the image's side)"),
        "shear": (shear, MAX_SHEAR, False, f"at most {MAX_SHEAR:g} (a 45° slant)"),
        "squeeze": (squeeze, 1.0, True, "below 1"),
        "elastic_alpha": (elastic_alpha, np.inf, False, "finite"),
    }
    for name, (value, bound, strict, words) in limits.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")
        if value > bound or (strict and value == bound):
            raise ValueError(f"{name} must be {words}, got {value:g}")
    if elastic_alpha > 0 and (
        isinstance(elastic_sigma, bool)
        or not isinstance(elastic_sigma, numbers.Real)
        or not (np.isfinite(elastic_sigma) and elastic_sigma > 0)
    ):
        raise ValueError(f"elastic_sigma must be a positive number, got {elastic_sigma!r}")


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    *,
    rotation: float = 12.0,
    scale: float = 0.10,
    shift: float = 2.5,
    shear: float = 0.0,
    squeeze: float = 0.0,
    order: int = 1,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
    hflip: bool = False,
) -> np.ndarray:
    """Distort each image by its own random affine map (and optionally an elastic field).

    Per image: a rotation uniform in ``±rotation`` degrees, a scale factor uniform in
    ``1 ± scale``, a horizontal shear (slant) uniform in ``±shear``, a squeeze (width
    against height) uniform in ``1 ± squeeze``, and a shift uniform in ``±shift`` pixels
    along each axis, about the image centre.

    Parameters
    ----------
    images : ndarray, shape (N, H, W), float, background 0
    rng : numpy.random.Generator
        The only source of randomness, so a seeded generator gives the same batch.
    rotation, scale, shift, shear, squeeze : float
        Ranges as above; 0 turns a distortion off.
    order : {0, 1}
        Nearest-neighbour (0) or bilinear (1) resampling. Nearest keeps the strokes as
        sharp as the test digits are; bilinear blurs every training digit a little.
    elastic_alpha, elastic_sigma : float
        Elastic distortion (Simard et al. 2003): uniform random displacements in
        ``[-1, 1]`` smoothed by a Gaussian of ``elastic_sigma`` pixels and scaled by
        ``elastic_alpha``; 0 turns it off.
    hflip : bool
        Also mirror each image left to right with probability 1/2 (for pictures whose
        mirror image is of the same class, such as clothes; never for digits). The
        generator is drawn from for it only when it is on, so the other distortions of a
        seed stay what they were without it.

    Returns
    -------
    ndarray, shape (N, H, W), dtype of ``images``
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    check_distortions(
        images.shape[1:],
        rotation=rotation,
        scale=scale,
        shift=shift,
        shear=shear,
        squeeze=squeeze,
        elastic_alpha=elastic_alpha,
        elastic_sigma=elastic_sigma,
    )
    n = len(images)
    angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
    zoom = rng.uniform(1 - scale, 1 + scale, n)
    slant = rng.uniform(-shear, shear, n)
    aspect = rng.uniform(1 - squeeze, 1 + squeeze, n)
    moves = rng.uniform(-shift, shift, (n, 2))
    # Forward map (input offset → output offset) in (row, col) coordinates:
    # rotate · shear · scale, with the column axis scaled by the aspect factor.
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    shear_m = np.zeros((n, 2, 2))
    shear_m[:, 0, 0] = shear_m[:, 1, 1] = 1
    shear_m[:, 1, 0] = slant  # column moves with the row: a slant
    scale_m = np.zeros((n, 2, 2))
    scale_m[:, 0, 0] = zoom
    scale_m[:, 1, 1] = zoom * aspect
    mirror = rng.random(n) < 0.5 if hflip else np.zeros(n, bool)
    if max(rotation, scale, shift, shear, squeeze, elastic_alpha) == 0:
        # Only mirrors: the gather would read every pixel at a whole-pixel position
        # (weights 0 and 1), which slicing gives exactly, without the gather's cost.
        out = images.copy()
        out[mirror] = images[mirror, :, ::-1]
        return out
    scale_m[:, 1, 1] *= np.where(mirror, -1.0, 1.0)  # a mirror about the centre column
    forward = rot @ shear_m @ scale_m
    inverse = np.linalg.inv(forward)
    offsets = -(inverse @ moves[:, :, None])[:, :, 0]
    displacement = None
    if elastic_alpha > 0:
        h, w = images.shape[1:]
        field = rng.uniform(-1, 1, (n, 2, h, w)).astype(np.float32)
        # Gaussian smoothing as two small dense matrix products (zero outside the image),
        # which BLAS does far faster than a filter over thousands of tiny images.
        gh, gw = (_gaussian_matrix(size, elastic_sigma) for size in (h, w))
        displacement = (gh @ field @ gw.T) * np.float32(elastic_alpha)
    return warp_affine(images, inverse, offsets, order, displacement)
