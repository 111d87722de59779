"""Compiled loops for the fast layers: 2×2 max pooling and the grid col2im (docs/design.md §5.10).

These are the parts of LeNet-5's passes that numpy can only do with several whole-array
passes and temporaries (pairwise comparisons, masks, a tap-by-tap scatter) and that a
plain loop does in one pass. Each function is compiled by numba, without fast-math (no
reassociation: every sum is made in the order the code writes it, so the results do not
depend on the machine's vector width), and releases the GIL, so that the chunks of a batch
(:class:`~convnet.model.Sequential`) run them side by side on the package's threads. None
of them threads itself: a chunk's result is the same whichever thread runs it.

Compiled code is cached next to this file (numba's ``cache=True``, in ``__pycache__``), or
in numba's user-wide cache when that folder is not writable; where no cache location is
writable at all, the functions are compiled in every process instead.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "bias_relu_pool2_backward",
    "bias_relu_pool2_forward",
    "col2im_dense",
    "col2im_grid",
    "im2col_dense",
    "max_pool2_backward",
    "max_pool2_forward",
    "relu_backward",
    "relu_forward",
    "sgd_update",
]


def _jit(function):
    """``numba.njit(cache=True, nogil=True)``, without the cache where none can be written
    (numba refuses ``cache=True`` when it finds no writable location)."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)


@_jit
def max_pool2_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2×2 max pooling with stride 2 of ``x (N, C, 2·Ho, 2·Wo)``, C-contiguous.

    Returns the maxima ``(N, C, Ho, Wo)`` and, as uint8, the position ``2·r + q`` of each
    window's first maximum in row-major order (PyTorch's rule, docs/design.md §5.4): a
    later tap wins only if it is larger. A NaN counts as larger than any number, as for
    ``np.argmax``, so the first NaN of a window wins and is its output.
    """
    n, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    out = np.empty((n, c, ho, wo), x.dtype)
    where = np.empty((n, c, ho, wo), np.uint8)
    for b in range(n):
        for ch in range(c):
            plane, out_plane, where_plane = x[b, ch], out[b, ch], where[b, ch]
            for y in range(ho):
                top, bottom = plane[2 * y], plane[2 * y + 1]
                out_row, where_row = out_plane[y], where_plane[y]
                for q in range(wo):
                    # selects, not branches: see bias_relu_pool2_forward. A tap wins if it
                    # is not ≤ the best so far (larger, or NaN) and the best is no NaN.
                    best, k = top[2 * q], np.uint8(0)
                    v = top[2 * q + 1]
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(1) if wins else k
                    v = bottom[2 * q]
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(2) if wins else k
                    v = bottom[2 * q + 1]
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(3) if wins else k
                    out_row[q], where_row[q] = best, k
    return out, where


@_jit
def max_pool2_backward(dout: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The input gradient ``(N, C, 2·Ho, 2·Wo)`` of :func:`max_pool2_forward`.

    Each window's ``dout`` goes to the tap ``where`` names; the other three get 0.
    """
    n, c, ho, wo = dout.shape
    dx = np.empty((n, c, 2 * ho, 2 * wo), dout.dtype)
    zero = dout.dtype.type(0)
    for b in range(n):
        for ch in range(c):
            d_plane, where_plane, dx_plane = dout[b, ch], where[b, ch], dx[b, ch]
            for y in range(ho):
                d_row, where_row = d_plane[y], where_plane[y]
                top, bottom = dx_plane[2 * y], dx_plane[2 * y + 1]
                for q in range(wo):
                    k, g = where_row[q], d_row[q]
                    top[2 * q] = g if k == 0 else zero
                    top[2 * q + 1] = g if k == 1 else zero
                    bottom[2 * q] = g if k == 2 else zero
                    bottom[2 * q + 1] = g if k == 3 else zero
    return dx


@_jit
def col2im_grid(
    dcols: np.ndarray, channels: int, kh: int, kw: int, hp: int, wp: int
) -> np.ndarray:
    """Sum window gradients on the padded-width grid back onto ``(N, C, Hp, Wp)`` images.

    ``dcols[n, (c, i, j), p]`` is the gradient of tap ``(i, j)`` of the window at flat
    grid position ``p`` (``p = y·Wp + x``, see :func:`convnet.fast_layers._grid_cols`);
    that tap read the flat padded pixel ``p + i·Wp + j``, so it is added there. For each
    image and channel the taps are added in ``(i, j)`` order onto a zero start, each as one
    contiguous run of ``L`` values.
    """
    n, _, length = dcols.shape
    dx = np.zeros((n, channels, hp * wp), dcols.dtype)
    for b in range(n):
        for ch in range(channels):
            plane = dx[b, ch]
            for i in range(kh):
                for j in range(kw):
                    src = dcols[b, (ch * kh + i) * kw + j]
                    dst = plane[i * wp + j : i * wp + j + length]
                    for p in range(length):
                        dst[p] += src[p]
    return dx.reshape(n, channels, hp, wp)


@_jit
def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` of a flat array in one pass (NaN stays NaN, as ``np.maximum``)."""
    out = np.empty_like(x)
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        out[i] = zero if v <= zero else v
    return out


@_jit
def relu_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout`` where the ReLU's output ``out`` is positive, 0 elsewhere (flat arrays)."""
    dx = np.empty_like(dout)
    zero = dout.dtype.type(0)
    for i in range(dout.size):
        dx[i] = dout[i] if out[i] > zero else zero
    return dx


@_jit
def bias_relu_pool2_forward(
    grid: np.ndarray,
    bias: np.ndarray,
    wp: int,
    ho: int,
    wo: int,
    out: np.ndarray,
    where: np.ndarray,
) -> None:
    """A convolution's bias, a ReLU and a 2×2 max pooling in one pass over its grid.

    ``grid (N, O, L)`` is the bias-free output of :class:`~convnet.fast_layers.FastConv2D`
    on the padded-width grid (output pixel ``(y, x)`` at ``y·wp + x``; ``ho``, ``wo`` even).
    Each tap is ``max(grid + bias, 0)`` as :func:`relu_forward` makes it (the same single
    rounding of the addition that ``numpy.add`` makes), and each window's maximum and
    winning tap follow :func:`max_pool2_forward`'s rule, so the results equal those of the
    three layers run one after the other, bit for bit, without writing the full-size
    convolution and ReLU outputs.

    Writes the pooled maps into ``out (N, O, ho/2, wo/2)`` and the winning taps (``2·r +
    q``) into ``where``, uint8 of the same shape.
    """
    n, o, _ = grid.shape
    hq, wq = ho // 2, wo // 2
    zero = grid.dtype.type(0)
    for b in range(n):
        for ch in range(o):
            plane, shift = grid[b, ch], bias[ch]
            out_plane, where_plane = out[b, ch], where[b, ch]
            for y in range(hq):
                # Row slices rather than flat indices into the plane, and the comparisons
                # as non-short-circuit selects rather than branches: a branch on the data
                # is mispredicted about half the time (measured three times slower on
                # fresh data, although as fast when the same data was timed repeatedly).
                # A tap wins if it is not ≤ the best so far (larger, or NaN) and the best
                # is no NaN: max_pool2_forward's rule.
                top = plane[2 * y * wp : 2 * y * wp + wo]
                bottom = plane[(2 * y + 1) * wp : (2 * y + 1) * wp + wo]
                out_row, where_row = out_plane[y], where_plane[y]
                for q in range(wq):
                    v = top[2 * q] + shift
                    best = zero if v <= zero else v
                    k = np.uint8(0)
                    v = top[2 * q + 1] + shift
                    v = zero if v <= zero else v
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(1) if wins else k
                    v = bottom[2 * q] + shift
                    v = zero if v <= zero else v
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(2) if wins else k
                    v = bottom[2 * q + 1] + shift
                    v = zero if v <= zero else v
                    wins = (not v <= best) & (best == best)
                    best = v if wins else best
                    k = np.uint8(3) if wins else k
                    out_row[q] = best
                    where_row[q] = k


@_jit
def bias_relu_pool2_backward(
    dout: np.ndarray, where: np.ndarray, out: np.ndarray, wp: int, err: np.ndarray
) -> np.ndarray:
    """Back through :func:`bias_relu_pool2_forward`: the output error on the grid and the
    bias gradient.

    Each window's ``dout`` goes to its winning tap if the pooled output ``out`` (the ReLU's
    output at that tap) is positive, as :func:`max_pool2_backward` then
    :func:`relu_backward` route it; every other grid value, the junk columns ``x ≥ wo``
    included, is 0; all of ``err (N, O, L)`` is written. Returns the bias gradient
    ``(O,)``, the sum of each channel's error: over each row, then the rows of an image,
    then the images in order (a fixed order, not numpy's, so equal to the reference
    layers' sum up to rounding).
    """
    n, o, hq, wq = dout.shape
    dbias = np.empty(o, dout.dtype)
    zero = dout.dtype.type(0)
    for ch in range(o):
        total = zero
        for b in range(n):
            d_plane, where_plane, out_plane, e = dout[b, ch], where[b, ch], out[b, ch], err[b, ch]
            e[:] = zero
            image = zero
            for y in range(hq):
                d_row, where_row, out_row = d_plane[y], where_plane[y], out_plane[y]
                row = zero
                for q in range(wq):
                    g = d_row[q] if out_row[q] > zero else zero
                    k = where_row[q]
                    # one store at an address computed from the tap: no branch on the data
                    e[(2 * y + k // 2) * wp + 2 * q + k % 2] = g
                    row += g
                image += row
            total += image
        dbias[ch] = total
    return dbias


@_jit
def sgd_update(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    lr: float,
    momentum: float,
    weight_decay: float,
    use_decay: bool,
    use_momentum: bool,
    nesterov: bool,
) -> None:
    """One step of :class:`~convnet.optim.SGD` on flat arrays, in one pass, in place.

    Element by element the same operations in the same order as the optimiser's numpy
    passes (``g + wd·p``, ``v·m + g``, ``g + m·v``, ``p - lr·g``), each rounded to the
    arrays' dtype (the scalars are passed as that dtype; numba neither fuses a multiply and
    an add nor reorders them without fast-math), so the result is the same bit for bit.
    The decay is added only when ``use_decay``, the velocity ``v`` read and written only
    when ``use_momentum``.
    """
    for i in range(p.size):
        step = g[i]
        if use_decay:
            step = step + weight_decay * p[i]
        if use_momentum:
            velocity = v[i] * momentum
            velocity = velocity + step
            v[i] = velocity
            step = step + momentum * velocity if nesterov else velocity
        p[i] = p[i] - lr * step


@_jit
def im2col_dense(xp: np.ndarray, kh: int, kw: int, ho: int, wo: int, out: np.ndarray) -> None:
    """im2col for stride 1 without junk columns: ``out[n, (c, i, j), y·wo + x] = xp[n, c,
    y + i, x + j]`` for a padded batch ``xp (N, C, Hp, Wp)``, written into ``out (N,
    C·kh·kw, ho·wo)`` one output row (``wo`` values) at a time."""
    n, c, _, _ = xp.shape
    for b in range(n):
        for ch in range(c):
            plane = xp[b, ch]
            for i in range(kh):
                for j in range(kw):
                    row = out[b, (ch * kh + i) * kw + j]
                    for y in range(ho):
                        src = plane[y + i, j : j + wo]
                        dst = row[y * wo : y * wo + wo]
                        for x in range(wo):
                            dst[x] = src[x]


@_jit
def col2im_dense(
    dcols: np.ndarray, channels: int, kh: int, kw: int, hp: int, wp: int, ho: int, wo: int
) -> np.ndarray:
    """The adjoint of :func:`im2col_dense`: window gradients ``(N, C·kh·kw, ho·wo)`` summed
    onto zero ``(N, C, Hp, Wp)`` images, for each image and channel tap by tap in ``(i, j)``
    order (the order of :func:`col2im_grid`)."""
    n = dcols.shape[0]
    dx = np.zeros((n, channels, hp, wp), dcols.dtype)
    for b in range(n):
        for ch in range(channels):
            plane = dx[b, ch]
            for i in range(kh):
                for j in range(kw):
                    src = dcols[b, (ch * kh + i) * kw + j]
                    for y in range(ho):
                        s = src[y * wo : y * wo + wo]
                        d = plane[y + i, j : j + wo]
                        for x in range(wo):
                            d[x] += s[x]
    return dx
