"""Fast versions of the layers LeNet-5 spends its time in, behind the same pure interface.

:class:`FastConv2D`, :class:`FastReLU` and :class:`FastMaxPool2D` are subclasses of the
reference layers of :mod:`convnet.layers` that compute the same thing faster where their
shapes allow it, and defer to the reference maths elsewhere:

- a stride-1 convolution gathers its im2col columns on the padded width grid (long
  contiguous copies instead of many short window rows), takes its weight gradient on the
  same grid, and its input gradient as the product ``Wᵀ δ`` on the grid summed back onto
  the image by a compiled col2im (:func:`convnet.kernels.col2im_grid`), each tap one
  contiguous run; where the grid's junk columns would lengthen the products by more than
  a quarter (:data:`DENSE_ABOVE`), it gathers dense columns instead (a compiled im2col,
  :func:`convnet.kernels.im2col_dense`, and its col2im);
- a ReLU is one compiled pass each way, and keeps its output (not a mask) for backward;
- a 2×2 max pooling whose windows tile the input runs as one compiled pass that keeps
  the winning tap of each window (:func:`convnet.kernels.max_pool2_forward`), and routes
  the gradient back to it in another.

Their outputs and gradients are tested against the reference layers (equal up to the
order of the sums for the convolution, bit for bit for the pooling). :func:`convnet.lenet5`
is built from them.

:class:`ConvReLUPool` runs a convolution, a ReLU and a 2×2 max pooling as one stage (its
bias, the ReLU and the pooling one compiled pass each way), writing into the
:class:`Workspace` arrays a :class:`~convnet.model.Sequential` keeps between passes;
``Sequential`` runs every such triple of its layers this way (docs/design.md §5.10).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .kernels import (
    bias_relu_pool2_backward,
    bias_relu_pool2_forward,
    col2im_dense,
    col2im_grid,
    im2col_dense,
    max_pool2_backward,
    max_pool2_forward,
    relu_backward,
    relu_forward,
)
from .layers import Backward, Conv2D, Forward, MaxPool2D, Params, ReLU, Rng, Shape, _check_input

__all__ = ["ConvReLUPool", "FastConv2D", "FastMaxPool2D", "FastReLU", "Workspace"]


# --------------------------------------------------------------------------- workspaces


class Workspace:
    """Arrays kept from one pass to the next, by key, so that a pass writes into memory it
    has used before (docs/design.md §5.10).

    A fresh array of a few hundred kilobytes or more is mapped from the operating system
    and faulted in page by page as it is first written, and handed back when freed; on
    this machine (a virtual one) a page fault cost about 3 µs, and a training step of
    LeNet-5 at batch 256 took thousands of them. :class:`~convnet.model.Sequential` keeps
    one workspace per chunk of a batch (for what a chunk's caches hold until its backward
    pass) and one per thread (for what a pass uses and drops).
    """

    def __init__(self) -> None:
        self._arrays: dict[Any, np.ndarray] = {}
        self._owners: dict[Any, object] = {}

    def get(self, key: Any, shape: Shape, dtype: np.dtype, owner: object = None) -> np.ndarray:
        """The array kept under ``key``, replaced by a new (uninitialised) one unless it has
        ``shape`` and ``dtype``; whoever asks is to write it, and ``owner`` (an object, or
        None) is recorded as the writer of what it now holds."""
        array = self._arrays.get(key)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[key] = np.empty(shape, dtype)
        self._owners[key] = owner
        return array

    def holds(self, key: Any, owner: object) -> bool:
        """Whether the array under ``key`` still holds what ``owner`` wrote (nobody asked
        for it since)."""
        return owner is not None and self._owners.get(key) is owner


# --------------------------------------------------------------------------- convolution


def _grid_cols(
    xp: np.ndarray, kernel: tuple[int, int], length: int, out: np.ndarray | None = None
) -> np.ndarray:
    """im2col for stride 1 on the padded width grid: ``(N, C·kh·kw, L)``, a fresh array
    (or ``out``, filled).

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
    if out is None:
        return view.reshape(n, c * kh * kw, length)
    np.copyto(out.reshape(n, c, kh, kw, length), view)
    return out


#: The grid's junk columns make its products ``((Ho - 1)·Wp + Wo) / (Ho·Wo)`` times as long
#: as the output; above this ratio the columns are gathered without them
#: (:func:`~convnet.kernels.im2col_dense`). For LeNet's conv2 (1.36) the three products
#: then took 0.64 of the time and the gather and col2im about 170 µs more per 32 images,
#: a net gain; for conv1 (1.14) the longer gather outweighed the shorter products.
DENSE_ABOVE = 1.25


def _row_stride(ho: int, wo: int, wp: int) -> int:
    """How far apart the output rows lie in the columns: ``Wp`` on the grid, ``Wo`` dense."""
    return wo if ((ho - 1) * wp + wo) > DENSE_ABOVE * ho * wo else wp


def _grid_view(grid: np.ndarray, shape: tuple[int, int], wp: int) -> np.ndarray:
    """View ``(N, O, Ho, Wo)`` of an ``(N, O, L)`` grid whose rows are ``Wp`` apart."""
    g0, g1, g2 = grid.strides
    return as_strided(grid, shape=(*grid.shape[:2], *shape), strides=(g0, g1, wp * g2, g2))


class _Scratched(NamedTuple):
    """In a cache instead of the columns: they were written in a thread's scratch
    workspace, which may have been reused since; if so, they are gathered again from
    ``x``."""

    x: np.ndarray
    cols: np.ndarray
    owner: object  # unique to the pass that wrote them
    workspace: Workspace


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
        grid, cache, (ho, wo) = self._grid_product(params, x)
        out = np.add(_grid_view(grid, (ho, wo), cache[3]), params["bias"][:, None, None])
        return out, cache

    def _grid_product(
        self,
        params: Params,
        x: np.ndarray,
        keep: Workspace | None = None,
        scratch: Workspace | None = None,
        key: Any = None,
        keep_columns: bool = True,
    ) -> tuple[np.ndarray, Any, Shape]:
        """The bias-free output ``(N, O, L)`` on the padded-width grid (stride 1), the
        cache for :meth:`backward` and the output's ``(Ho, Wo)``; the columns in ``keep``,
        the padded input and the grid in ``scratch`` where given, under keys ``(key, …)``."""
        # Unless keep_columns, the columns go to the thread's scratch, not the chunk's
        # workspace: one buffer, reused by every chunk the thread runs while it is still
        # in the core's caches (inference: 8.3 → 6.5 ms per 256 images on one thread). A
        # backward pass reads them back if that thread has not reused the buffer since
        # (a training step's chunk, forward then backward on one thread), and gathers them
        # again otherwise. Kept (a forward pass in training, whose backward comes after
        # every chunk's forward pass), they are read back: gathering them again was slower.
        in_scratch = not keep_columns and keep is not None and scratch is not None
        owner = object() if in_scratch else None
        cols, padded_shape, (ho, wo), stride = self._columns(
            x, scratch, key, scratch if in_scratch else keep, owner
        )
        n, length = len(x), cols.shape[2]
        weight = params["weight"].reshape(self.out_channels, -1)
        if scratch is None:
            grid = np.matmul(weight, cols)  # (N, O, L)
        else:
            grid = np.matmul(
                weight,
                cols,
                out=scratch.get((key, "grid"), (n, self.out_channels, length), x.dtype),
            )
        kept = _Scratched(x, cols, owner, scratch) if in_scratch else cols
        return grid, (kept, padded_shape, x.shape, stride), (ho, wo)

    def _columns(
        self,
        x: np.ndarray,
        scratch: Workspace | None,
        key: Any,
        store: Workspace | None,
        owner: object = None,
    ) -> tuple[np.ndarray, Shape, tuple[int, int], int]:
        """The columns of ``x`` (in ``store`` where given, written by ``owner``), the padded
        shape, ``(Ho, Wo)`` and the row stride."""
        if scratch is None:
            xp, ho, wo = self._padded(x)
        else:
            _check_input(x, 4, "Conv2D")
            if x.dtype != self.dtype:
                raise TypeError(
                    f"Conv2D: input dtype {x.dtype} differs from the layer's {self.dtype}"
                )
            _, ho, wo = self.output_shape(x.shape[1:])
            (ph, pw), (n, c, h, w) = self.padding, x.shape
            if ph or pw:
                xp = scratch.get((key, "padded"), (n, c, h + 2 * ph, w + 2 * pw), x.dtype)
                xp.fill(0)
                xp[:, :, ph : ph + h, pw : pw + w] = x
            else:
                xp = np.ascontiguousarray(x)
        (n, c, _, wp), (kh, kw) = xp.shape, self.kernel_size
        stride = _row_stride(ho, wo, wp)
        length = (ho - 1) * stride + wo
        shape = (n, c * kh * kw, length)
        if stride == wp:
            cols = _grid_cols(
                xp,
                self.kernel_size,
                length,
                None if store is None else store.get((key, "cols"), shape, x.dtype, owner),
            )
        else:
            cols = (
                np.empty(shape, x.dtype)
                if store is None
                else store.get((key, "cols"), shape, x.dtype, owner)
            )
            im2col_dense(xp, kh, kw, ho, wo, cols)
        return cols, xp.shape, (ho, wo), stride

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """As :meth:`Conv2D.backward`, on the grid for stride 1."""
        if self.stride != (1, 1):
            return super().backward(params, cache, dout, need_dx=need_dx)
        cols, _, _, stride = cache
        n, o, ho, wo = dout.shape
        # The output error on the same grid as the columns, zero in the junk columns so
        # that they add nothing.
        err = np.zeros((n, o, ho, stride), dtype=dout.dtype)
        err[..., :wo] = dout
        err = err.reshape(n, o, ho * stride)[..., : cols.shape[2]]
        return self._grid_backward(params, cache, err, dout.sum(axis=(0, 2, 3)), need_dx)

    def _grid_backward(
        self,
        params: Params,
        cache: Any,
        err: np.ndarray,
        dbias: np.ndarray,
        need_dx: bool,
        scratch: Workspace | None = None,
        key: Any = None,
    ) -> Backward:
        """:meth:`backward` from the output error ``err (N, O, L)`` on the grid (zero in
        the junk columns) and the bias gradient ``dbias``; the products' results in
        ``scratch`` where given."""
        cols, padded_shape, in_shape, stride = cache
        if isinstance(cols, _Scratched):
            if cols.workspace is scratch and scratch.holds((key, "cols"), cols.owner):
                cols = cols.cols
            else:
                cols = self._columns(cols.x, scratch, key, scratch)[0]
        weight = params["weight"]
        o, (hp, wp) = weight.shape[0], padded_shape[2:]
        n, k, _ = cols.shape

        def buffer(name: str, shape: Shape) -> np.ndarray | None:
            return None if scratch is None else scratch.get((key, name), shape, err.dtype)

        # dW = Σ_n δ_n · cols_nᵀ, one product per image summed in image order. (cols_n ·
        # δ_nᵀ, the transposed product, is the faster of the two for OpenBLAS with LeNet's
        # shapes.)
        per_image = np.matmul(cols, err.transpose(0, 2, 1), out=buffer("dw", (n, k, o)))
        dw = per_image.sum(axis=0).T
        grads = {"weight": dw.reshape(weight.shape), "bias": dbias}
        if not need_dx:
            return None, grads
        # The window gradients Wᵀ δ_n on the grid, one product per image, then summed
        # back onto the padded images tap by tap in one compiled pass (col2im).
        dcols = np.matmul(weight.reshape(o, -1).T, err, out=buffer("dcols", (n, k, err.shape[2])))
        _, c, kh, kw = weight.shape
        if stride == wp:
            dxp = col2im_grid(dcols, c, kh, kw, hp, wp)
        else:
            dxp = col2im_dense(dcols, c, kh, kw, hp, wp, hp - kh + 1, stride)
        (ph, pw), (_, _, h, w) = self.padding, in_shape
        return dxp[:, :, ph : ph + h, pw : pw + w], grads


def _check_dout(dout: np.ndarray, shape: Shape, name: str) -> None:
    """Refuse a ``dout`` whose shape is not the forward output's: the compiled loops index
    without bounds checks, and would read past its end or leave part of ``dx`` unset."""
    if np.shape(dout) != shape:
        raise ValueError(
            f"{name}: dout must have the forward output's shape {shape}, got {np.shape(dout)}"
        )


# --------------------------------------------------------------------------- pooling


class _Pool2Cache(NamedTuple):
    """What the 2×2 pooling keeps for backward: which tap of each window won."""

    where: np.ndarray  # (N, C, Ho, Wo) uint8: 2·row + column of the window's first maximum
    in_shape: Shape


class FastMaxPool2D(MaxPool2D):
    """:class:`~convnet.layers.MaxPool2D` in one compiled pass when 2×2 windows tile the input.

    Same results bit for bit, the same first-maximum rule (:func:`~convnet.kernels.
    max_pool2_forward`); other windows, and inputs with an odd side, run the reference
    maths.
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
        """As :meth:`MaxPool2D.forward`, one compiled pass for 2×2 tiles."""
        _check_input(x, 4, "MaxPool2D")
        self.output_shape(x.shape[1:])
        if not self._pairs(x):
            return super().forward(params, x, training=training, rng=rng)
        out, where = max_pool2_forward(np.ascontiguousarray(x))
        return out, _Pool2Cache(where, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """As :meth:`MaxPool2D.backward`: each window's gradient to the tap that won."""
        if not isinstance(cache, _Pool2Cache):
            return super().backward(params, cache, dout, need_dx=need_dx)
        _check_dout(dout, cache.where.shape, "MaxPool2D")
        return max_pool2_backward(np.ascontiguousarray(dout), cache.where), {}


# --------------------------------------------------------------------------- activation


class FastReLU(ReLU):
    """:class:`~convnet.layers.ReLU` as one compiled pass each way.

    The same results bit for bit; the cache is the output (positive exactly where the
    input is), so that evaluation computes no mask it does not use.
    """

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """``max(x, 0)``; the cache is the output."""
        x = np.ascontiguousarray(x)
        out = relu_forward(x.reshape(-1)).reshape(x.shape)
        return out, out

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """``dout`` where the output was positive, 0 elsewhere."""
        _check_dout(dout, cache.shape, "ReLU")
        dout = np.ascontiguousarray(dout)
        return relu_backward(dout.reshape(-1), cache.reshape(-1)).reshape(dout.shape), {}


# --------------------------------------------------------------------------- fused stage


class _StageCache(NamedTuple):
    """What :class:`ConvReLUPool` keeps for backward."""

    conv: Any  # FastConv2D's cache: the grid columns, the padded and the input shapes
    where: np.ndarray  # (N, O, Ho/2, Wo/2) uint8, the winning tap of each window
    out: np.ndarray  # the pooled output, positive exactly where the ReLU let the tap through


class ConvReLUPool:
    """A :class:`FastConv2D` (stride 1), a :class:`FastReLU` and a 2×2
    :class:`FastMaxPool2D` run as one stage (docs/design.md §5.10).

    The convolution's product on the grid is unchanged; its bias, the ReLU and the pooling
    are one compiled pass (:func:`~convnet.kernels.bias_relu_pool2_forward`) that writes
    only the pooled maps, and backward routes each window's gradient straight onto the
    convolution's grid (:func:`~convnet.kernels.bias_relu_pool2_backward`). The output,
    the weight gradient and the input gradient equal those of the three layers run one
    after the other bit for bit; the bias gradient is the same sum in another order (equal
    up to rounding). :class:`~convnet.model.Sequential` runs every such triple of its
    layers this way; the parameters stay the convolution's.

    Parameters
    ----------
    conv, relu, pool : the three layers, for which :meth:`joins` holds
    """

    def __init__(self, conv: FastConv2D, relu: FastReLU, pool: FastMaxPool2D) -> None:
        if not self.joins(conv, relu, pool):
            raise ValueError(
                "ConvReLUPool needs FastConv2D (stride 1), FastReLU, FastMaxPool2D(2)"
            )
        self.conv = conv

    @staticmethod
    def joins(conv: object, relu: object, pool: object) -> bool:
        """Whether three layers make such a stage: exactly these classes (a subclass may
        change what a layer does), the convolution with stride 1, the pooling 2×2 tiles."""
        return (
            type(conv) is FastConv2D
            and conv.stride == (1, 1)
            and type(relu) is FastReLU
            and type(pool) is FastMaxPool2D
            and pool.kernel_size == pool.stride == (2, 2)
        )

    def forward(
        self,
        params: Params,
        x: np.ndarray,
        *,
        keep_columns: bool = True,
        keep: Workspace | None = None,
        scratch: Workspace | None = None,
    ) -> Forward | None:
        """The pooled maps and the cache, or None where the convolution's output has an
        odd side (the layers then run one by one).

        What the cache holds (the pooled maps and winning taps, and the columns if
        ``keep_columns``) is written in ``keep``, the padded input and the grid (and the
        columns unless ``keep_columns``) in ``scratch``, where given (fresh arrays
        otherwise): the cache is then valid until the next pass that uses ``keep``
        (columns in ``scratch`` are gathered again if that was reused meanwhile).
        """
        _check_input(x, 4, "Conv2D")
        _, ho, wo = self.conv.output_shape(x.shape[1:])
        if ho % 2 or wo % 2:
            return None
        grid, cache, _ = self.conv._grid_product(params, x, keep, scratch, self, keep_columns)
        shape = (len(x), self.conv.out_channels, ho // 2, wo // 2)
        if keep is None:
            out, where = np.empty(shape, x.dtype), np.empty(shape, np.uint8)
        else:
            out, where = (
                keep.get((self, "out"), shape, x.dtype),
                keep.get((self, "where"), shape, np.uint8),
            )
        bias_relu_pool2_forward(grid, params["bias"], cache[3], ho, wo, out, where)
        return out, _StageCache(cache, where, out)

    def backward(
        self,
        params: Params,
        cache: _StageCache,
        dout: np.ndarray,
        *,
        need_dx: bool = True,
        scratch: Workspace | None = None,
    ) -> Backward:
        """The convolution's input gradient (None unless ``need_dx``) and its gradients;
        the intermediate arrays in ``scratch`` where given."""
        _check_dout(dout, cache.where.shape, "MaxPool2D")
        _, padded_shape, in_shape, stride = cache.conv
        ho, wo = (
            padded_shape[2] - self.conv.kernel_size[0] + 1,
            padded_shape[3] - self.conv.kernel_size[1] + 1,
        )
        shape = (in_shape[0], self.conv.out_channels, (ho - 1) * stride + wo)
        err = (
            np.empty(shape, dout.dtype)
            if scratch is None
            else scratch.get((self, "err"), shape, dout.dtype)
        )
        dbias = bias_relu_pool2_backward(
            np.ascontiguousarray(dout), cache.where, cache.out, stride, err
        )
        return self.conv._grid_backward(params, cache.conv, err, dbias, need_dx, scratch, self)
