"""Fast versions of the layers LeNet-5 spends its time in, behind the same pure interface.

:class:`FastConv2D` and :class:`FastMaxPool2D` are subclasses of the reference layers of
:mod:`convnet.layers` that compute the same thing faster where their shapes allow it, and
defer to the reference maths elsewhere:

- a stride-1 convolution gathers its im2col columns on the padded width grid (long
  contiguous copies instead of many short window rows), takes its weight gradient on the
  same grid and its input gradient from a product with shifted copies of the output error
  (:func:`grid_input_grad`), with no col2im tap loop;
- a 2×2 max pooling whose windows tile the input takes two pairwise maxima over reshaped
  views, with no window copy, and routes the gradient back by two selects.

Their outputs and gradients are tested against the reference layers (equal up to the
order of the sums for the convolution, bit for bit for the pooling). :func:`convnet.lenet5`
is built from them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .layers import Backward, Conv2D, Forward, MaxPool2D, Params, Rng, Shape, _check_input

__all__ = ["FastConv2D", "FastMaxPool2D", "grid_input_grad"]


# --------------------------------------------------------------------------- convolution


def _grid_cols(xp: np.ndarray, kernel: tuple[int, int], length: int) -> np.ndarray:
    """im2col for stride 1 on the padded width grid: ``(N, C·kh·kw, L)``, a fresh array.

    Output pixel ``(y, x)`` of a ``(Hp, Wp)`` padded image reads tap ``(i, j)`` at the flat
    index ``(y + i)·Wp + x + j = p + i·Wp + j`` with ``p = y·Wp + x``. Computing the output
    at every ``p < L = (Ho - 1)·Wp + Wo`` (the columns ``x ≥ Wo`` of each row are junk,
    dropped afterwards) turns the window gather into long contiguous copies, which numpy
    does far faster than the many short rows of 2-D windows.

    Each image keeps its own ``(C·kh·kw, L)`` block: the products then run image by image
    (a batched ``matmul``) on blocks small enough for the cache, which OpenBLAS does about
    twice as fast as one product over the whole batch's columns, whose thin ``O × C·kh·kw``
    weight matrix makes it re-pack a long panel that no longer fits. The output comes out
    as ``(N, O, L)``, already in batch-major order.
    """
    n, c, _, wp = xp.shape
    kh, kw = kernel
    s0, s1, _, s3 = xp.strides
    view = as_strided(
        xp, shape=(n, c, kh, kw, length), strides=(s0, s1, wp * s3, s3, s3), writeable=False
    )
    return view.reshape(n, c * kh * kw, length)


def _grid_view(grid: np.ndarray, shape: tuple[int, int], wp: int) -> np.ndarray:
    """View ``(N, O, Ho, Wo)`` of an ``(N, O, L)`` grid whose rows are ``Wp`` apart."""
    g0, g1, g2 = grid.strides
    return as_strided(grid, shape=(*grid.shape[:2], *shape), strides=(g0, g1, wp * g2, g2))


def grid_input_grad(weight: np.ndarray, dout: np.ndarray, padded_shape: Shape) -> np.ndarray:
    """Input gradient ``(N, C, Hp, Wp)`` of a stride-1 convolution, without a tap loop.

    ``dx[c, p] = Σ_{i,j,o} w[o, c, i, j] · δ[o, p - i·Wp - j]`` on the flat padded grid. The
    output error is laid on a grid with one padded image (``Q = Hp·Wp`` values) per batch
    entry and a zero margin in front, so that every shifted read stays inside the array and
    reads zeros where it should. The sum is split in two: the ``kw`` taps along a row and
    the output channels go into one matrix product over ``kw`` shifted copies of the error,
    ``g[(i, c), m] = Σ_{j,o} w[o, c, i, j] · δ[o, m - j]``, and the ``kh`` rows are then
    summed over a strided view, ``dx[c, p] = Σ_i g[(i, c), p - i·Wp]``. That product writes
    ``kh·C`` rows where the plain col2im product ``wᵀ δ`` writes ``kh·kw·C``, which for
    LeNet's conv2 makes the input gradient about 15 % faster.

    Parameters
    ----------
    weight : ndarray, shape (O, C, kh, kw)
    dout : ndarray, shape (N, O, Ho, Wo)
        With ``Ho = Hp - kh + 1`` and ``Wo = Wp - kw + 1``.
    padded_shape : (N, C, Hp, Wp)

    Returns
    -------
    ndarray, shape padded_shape, dout's dtype
    """
    n, c, hp, wp = padded_shape
    o, _, kh, kw = weight.shape
    ho, wo = dout.shape[2:]
    q, front = hp * wp, (kh - 1) * wp + kw - 1
    err = np.zeros((o, front + n * q), dtype=dout.dtype)
    # A reshape that splits the last axis is always a view, so this writes into err.
    err[:, front:].reshape(o, n, hp, wp)[:, :, :ho, :wo] = dout.transpose(1, 0, 2, 3)
    # shifted[j, o, m] = err[o, m + kw - 1 - j] = δ[o, m - (kh - 1)·Wp - j]
    m = (kh - 1) * wp + n * q
    e0, e1 = err.strides
    shifted = as_strided(
        err[:, kw - 1 :], shape=(kw, o, m), strides=(-e1, e0, e1), writeable=False
    ).reshape(kw * o, m)
    g = weight.transpose(2, 1, 3, 0).reshape(kh * c, kw * o) @ shifted
    # dx[n, c, p] = Σ_i g[(i, c), (kh - 1 - i)·Wp + n·Q + p]
    g0, g1 = g.strides
    rows = as_strided(
        g[:, (kh - 1) * wp :],
        shape=(kh, n, c, q),
        strides=(c * g0 - wp * g1, q * g1, g0, g1),
        writeable=False,
    )
    return rows.sum(axis=0).reshape(padded_shape)


class FastConv2D(Conv2D):
    """:class:`~convnet.layers.Conv2D` on the padded-width grid when the stride is 1.

    Same configuration, parameters and results (up to the order of the sums); other
    strides run the reference im2col maths.

    Examples
    --------
    >>> conv = FastConv2D(1, 6, 5, padding=2)
    >>> params = conv.init_params(0)
    >>> out, cache = conv.forward(params, np.zeros((2, 1, 28, 28), np.float32))
    >>> out.shape
    (2, 6, 28, 28)
    """

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """As :meth:`Conv2D.forward`; the cached columns are on the grid for stride 1."""
        if self.stride != (1, 1):
            return super().forward(params, x, training=training, rng=rng)
        xp, ho, wo = self._padded(x)
        wp = xp.shape[3]
        cols = _grid_cols(xp, self.kernel_size, (ho - 1) * wp + wo)
        grid = np.matmul(params["weight"].reshape(self.out_channels, -1), cols)  # (N, O, L)
        out = np.add(_grid_view(grid, (ho, wo), wp), params["bias"][:, None, None])
        # The columns are kept for backward: gathering them again there was measured
        # slower than reading them back, with two threads running chunks side by side.
        return out, (cols, xp.shape, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """As :meth:`Conv2D.backward`, on the grid for stride 1."""
        if self.stride != (1, 1):
            return super().backward(params, cache, dout, need_dx=need_dx)
        cols, padded_shape, in_shape = cache
        weight = params["weight"]
        n, o, ho, wo = dout.shape
        # The output error on the same grid as the columns, zero in the junk columns so
        # that they add nothing: dW = Σ_n δ_n · cols_nᵀ, one product per image summed in
        # image order. (cols_n · δ_nᵀ, the transposed product, is the faster of the two
        # for OpenBLAS with LeNet's shapes.)
        wp, length = padded_shape[3], cols.shape[2]
        err = np.zeros((n, o, ho, wp), dtype=dout.dtype)
        err[..., :wo] = dout
        err = err.reshape(n, o, ho * wp)[..., :length]
        dw = np.matmul(cols, err.transpose(0, 2, 1)).sum(axis=0).T
        grads = {"weight": dw.reshape(weight.shape), "bias": dout.sum(axis=(0, 2, 3))}
        if not need_dx:
            return None, grads
        dxp = grid_input_grad(weight, dout, padded_shape)
        (ph, pw), (_, _, h, w) = self.padding, in_shape
        return dxp[:, :, ph : ph + h, pw : pw + w], grads


# --------------------------------------------------------------------------- pooling


class _Pairs(NamedTuple):
    """What the 2×2 pooling keeps for backward: which member of each pair won."""

    col_second: np.ndarray  # (N, C, H, Wo): the right column of a pair won
    row_second: np.ndarray  # (N, C, Ho, Wo): the bottom row of a pair won
    in_shape: Shape


class FastMaxPool2D(MaxPool2D):
    """:class:`~convnet.layers.MaxPool2D` by pairwise maxima when 2×2 windows tile the input.

    Same results bit for bit, the same first-maximum rule; other windows, and inputs with
    an odd side, run the reference maths.
    """

    def _pairs(self, x: np.ndarray) -> bool:
        """Whether 2×2 windows with stride 2 tile ``x`` exactly."""
        return (
            self.kernel_size == self.stride == (2, 2)
            and x.shape[2] % 2 == 0
            and x.shape[3] % 2 == 0
        )

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """As :meth:`MaxPool2D.forward`, in two pairwise steps for 2×2 tiles."""
        _check_input(x, 4, "MaxPool2D")
        c, ho, wo = self.output_shape(x.shape[1:])
        if not self._pairs(x):
            return super().forward(params, x, training=training, rng=rng)
        # The larger of each column pair, then the larger of each row pair, over reshaped
        # views (no window copy). A tie keeps the first of the pair, so the winner is the
        # first maximum in row-major order: row 0 wins whenever it holds a maximum, and
        # within the winning row column 0 wins whenever it holds one.
        n = len(x)
        pairs = x.reshape(n, c, x.shape[2], wo, 2)
        left, right = pairs[..., 0], pairs[..., 1]
        col_second = right > left
        rows = np.maximum(left, right).reshape(n, c, ho, 2, wo)
        top, bottom = rows[:, :, :, 0], rows[:, :, :, 1]
        row_second = bottom > top
        return np.maximum(top, bottom), _Pairs(col_second, row_second, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """As :meth:`MaxPool2D.backward`: undo the two pairwise steps in reverse order."""
        if not isinstance(cache, _Pairs):
            return super().backward(params, cache, dout, need_dx=need_dx)
        n, c, ho, wo = dout.shape
        # Each step is a select between the two members of a pair; ``g - g·m`` is exactly
        # ``g`` or 0 for a 0/1 mask m.
        rows = np.empty((n, c, ho, 2, wo), dtype=dout.dtype)
        np.multiply(dout, cache.row_second, out=rows[:, :, :, 1])
        np.subtract(dout, rows[:, :, :, 1], out=rows[:, :, :, 0])
        rows = rows.reshape(n, c, 2 * ho, wo)
        dx = np.empty((n, c, 2 * ho, wo, 2), dtype=dout.dtype)
        np.multiply(rows, cache.col_second, out=dx[..., 1])
        np.subtract(rows, dx[..., 1], out=dx[..., 0])
        return dx.reshape(cache.in_shape), {}
