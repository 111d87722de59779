"""Network layers with hand-written forward and backward passes (DESIGN.md §5).

Every layer works on batches: images are ``(N, C, H, W)``, vectors ``(N, features)``.
``forward(x)`` keeps what ``backward`` needs; ``backward(dout)`` returns the gradient with
respect to the input and stores each parameter's gradient in ``layer.grads`` under the same
key as the parameter in ``layer.params``. Parameters have PyTorch's layouts: convolution
weights ``(out, in, kh, kw)``, linear weights ``(out, in)``, biases ``(out,)``.

The convolution is an im2col product: the input windows are gathered once per call by a
strided view (one copy), and a batched matrix product (one per image, small enough for the
cache) does the work. Its input gradient is gathered back without a Python loop, through
strided views of the product of the weights with shifted copies of the output error
(stride 1), or by giving each kernel tap its own slab of a scratch array and summing the
slabs (other strides). :func:`conv2d_reference` is a slow, obviously-correct loop version
the fast one is tested against.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import DTypeLike

__all__ = [
    "AvgPool2D",
    "Conv2D",
    "Dropout",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2D",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "conv2d_reference",
]

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- helpers


def _pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of ints, each at least ``minimum``."""
    if isinstance(value, int | np.integer):
        pair = (value, value)
    elif isinstance(value, tuple | list):
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) for v in pair
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_input(x: np.ndarray, ndim: int, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name}: input must be a float32 or float64 ndarray, got "
            f"{getattr(x, 'dtype', type(x).__name__)}"
        )
    if x.ndim != ndim:
        layout = "(N, C, H, W)" if ndim == 4 else "(N, features)"
        raise ValueError(f"{name}: input must have shape {layout}, got shape {x.shape}")
    return x


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Read-only view ``(N, C, Ho, Wo, kh, kw)`` of the windows of a padded batch."""
    n, c, h, w = xp.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    s0, s1, s2, s3 = xp.strides
    return as_strided(
        xp,
        shape=(n, c, ho, wo, kh, kw),
        strides=(s0, s1, s2 * sh, s3 * sw, s2, s3),
        writeable=False,
    )


def _col2im(
    dcols: np.ndarray, padded_shape: Shape, kernel: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:
    """Sum window gradients ``(N, C, kh, kw, Ho, Wo)`` back onto a ``(N, C, Hp, Wp)`` image.

    The adjoint of :func:`_windows`. Tap ``(i, j)`` of window ``(y, x)`` lands on pixel
    ``(y·sh + i, x·sw + j)``; giving every tap its own ``(Hp, Wp)`` slab of a scratch array
    makes those writes disjoint, so one strided assignment places them all and a sum over
    the tap axes accumulates them, with no loop over taps or pixels.
    """
    n, c, hp, wp = padded_shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = dcols.shape[-2:]
    scratch = np.zeros((n, c, kh, kw, hp, wp), dtype=dcols.dtype)
    t0, t1, t2, t3, t4, t5 = scratch.strides
    slots = as_strided(
        scratch,
        shape=(n, c, kh, kw, ho, wo),
        strides=(t0, t1, t2 + t4, t3 + t5, t4 * sh, t5 * sw),
    )
    slots[...] = dcols
    return scratch.sum(axis=(2, 3))


def _pad_batch(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Zero-pad the last two axes into a fresh contiguous array (faster than ``np.pad``)."""
    ph, pw = padding
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


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


def _grid_input_grad(weight: np.ndarray, dout: np.ndarray, padded_shape: Shape) -> np.ndarray:
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


def conv2d_reference(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """Direct loop-based 2-D cross-correlation, the slow reference for :class:`Conv2D`.

    ``out[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · xp[n, c, y·sh + i, x·sw + j]`` with
    ``xp`` the zero-padded input, exactly as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    weight : ndarray, shape (O, C, kh, kw)
    bias : ndarray, shape (O,)
    stride, padding : int or (int, int)

    Returns
    -------
    ndarray, shape (N, O, Ho, Wo), float64
    """
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    out = np.zeros((n, o, ho, wo))
    for b in range(n):
        for f in range(o):
            for y in range(ho):
                for xx in range(wo):
                    patch = xp[b, :, y * sh : y * sh + kh, xx * sw : xx * sw + kw]
                    out[b, f, y, xx] = np.sum(patch * weight[f]) + bias[f]
    return out


# --------------------------------------------------------------------------- base


class Layer:
    """Base class: a layer with parameters, their gradients and a training flag.

    Attributes
    ----------
    params : dict of str to ndarray
        Learnable arrays, updated in place by the optimisers.
    grads : dict of str to ndarray
        Gradients filled by :meth:`backward`, same keys and shapes as ``params``.
    training : bool
        True in training mode (affects :class:`Dropout` only).
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Compute the layer's output for a batch and remember what backward needs."""
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Return ``dL/dx`` for ``dout = dL/dy`` and store the parameter gradients."""
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of one output sample for one input sample's shape (no batch axis)."""
        return tuple(input_shape)

    def _need_cache(self, cache: object) -> None:
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- convolution


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in PyTorch) with stride and zero padding.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and the output.
    kernel_size : int or (int, int)
        Kernel height and width.
    stride : int or (int, int)
        Step between windows.
    padding : int or (int, int)
        Zeros added on each side of the height and width.
    dtype : float32 or float64
        Parameter dtype; inputs must have the same dtype.
    rng : numpy.random.Generator, optional
        Source of the He/Kaiming-normal initial weights (``std = sqrt(2 / fan_in)``);
        biases start at zero.

    Attributes
    ----------
    params : {'weight': ndarray (out, in, kh, kw), 'bias': ndarray (out,)}
    need_input_grad : bool
        When False, :meth:`backward` skips the input gradient and returns None (the first
        layer of a network does not need it, and it is the costliest part of its backward).

    Examples
    --------
    >>> conv = Conv2D(1, 6, 5, padding=2, rng=np.random.default_rng(0))
    >>> conv.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 6, 28, 28)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        *,
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _pair(in_channels, "in_channels", 1)[0]
        self.out_channels = _pair(out_channels, "out_channels", 1)[0]
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.dtype = _float_dtype(dtype)
        self.need_input_grad = True
        rng = np.random.default_rng() if rng is None else rng
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params["weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
            self.dtype
        )
        self.params["bias"] = np.zeros(self.out_channels, dtype=self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache: tuple | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
        if ho < 1 or wo < 1:
            raise ValueError(
                f"Conv2D kernel {self.kernel_size} does not fit an input of {h}x{w} "
                f"with padding {self.padding}"
            )
        return (self.out_channels, ho, wo)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Convolve a batch.

        Parameters
        ----------
        x : ndarray, shape (N, in_channels, H, W), the layer's dtype

        Returns
        -------
        ndarray, shape (N, out_channels, Ho, Wo)
            ``Ho = (H + 2·ph - kh) // sh + 1``, likewise ``Wo``.
        """
        _check_input(x, 4, "Conv2D")
        if x.dtype != self.dtype:
            raise TypeError(f"Conv2D: input dtype {x.dtype} differs from the layer's {self.dtype}")
        n = x.shape[0]
        o, ho, wo = self.output_shape(x.shape[1:])
        xp = _pad_batch(x, self.padding) if any(self.padding) else np.ascontiguousarray(x)
        wmat = self.params["weight"].reshape(o, -1)
        bias = self.params["bias"][:, None, None]
        if self.stride == (1, 1):
            wp = xp.shape[3]
            length = (ho - 1) * wp + wo
            cols = _grid_cols(xp, self.kernel_size, length)
            grid = np.matmul(wmat, cols)  # (N, O, L), one product per image
            out = np.add(_grid_view(grid, (ho, wo), wp), bias)
        else:
            # (N, C·kh·kw, Ho·Wo) columns: the batched product comes out as (N, O, Ho·Wo).
            cols = _windows(xp, self.kernel_size, self.stride).transpose(0, 1, 4, 5, 2, 3)
            cols = cols.reshape(n, -1, ho * wo)
            out = np.add(np.matmul(wmat, cols).reshape(n, o, ho, wo), bias)
        # The columns are kept for backward: gathering them again there was measured
        # slower than reading them back, with two threads running chunks side by side.
        self._cache = (cols, xp.shape, x.shape)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Gradients of a convolution (DESIGN.md §5).

        The weight gradient is the correlation of the input with the output error; the
        input gradient is the full convolution of the output error with the flipped kernel,
        computed here as the transpose of the im2col product.

        Parameters
        ----------
        dout : ndarray, shape (N, out_channels, Ho, Wo)

        Returns
        -------
        ndarray, shape (N, in_channels, H, W), or None if ``need_input_grad`` is False
        """
        self._need_cache(self._cache)
        cols, padded_shape, in_shape = self._cache
        n, o, ho, wo = dout.shape
        weight = self.params["weight"]
        self.grads["bias"][...] = dout.sum(axis=(0, 2, 3))
        if self.stride == (1, 1):
            # The output error on the same grid as the columns, zero in the junk columns
            # so that they add nothing: dW = Σ_n δ_n · cols_nᵀ, one product per image
            # summed in image order. (cols_n · δ_nᵀ, the transposed product, is the faster
            # of the two for OpenBLAS with LeNet's shapes.)
            wp, length = padded_shape[3], cols.shape[2]
            err = np.zeros((n, o, ho, wp), dtype=dout.dtype)
            err[..., :wo] = dout
            err = err.reshape(n, o, ho * wp)[..., :length]
            dw = np.matmul(cols, err.transpose(0, 2, 1)).sum(axis=0).T
        else:
            d = np.ascontiguousarray(dout).reshape(n, o, -1)
            dw = np.matmul(d, cols.transpose(0, 2, 1)).sum(axis=0)
        self.grads["weight"][...] = dw.reshape(weight.shape)
        if not self.need_input_grad:
            return None
        if self.stride == (1, 1):
            dxp = _grid_input_grad(weight, dout, padded_shape)
        else:
            kh, kw = self.kernel_size
            dcols = np.matmul(weight.reshape(o, -1).T, d)
            dcols = dcols.reshape(n, self.in_channels, kh, kw, ho, wo)
            dxp = _col2im(dcols, padded_shape, self.kernel_size, self.stride)
        (ph, pw), (_, _, h, w) = self.padding, in_shape
        return dxp[:, :, ph : ph + h, pw : pw + w]

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding})"
        )


# --------------------------------------------------------------------------- pooling


class _Pool2D(Layer):
    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)
        self._cache: tuple | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise ValueError(
                f"{type(self).__name__} window {self.kernel_size} does not fit an input of {h}x{w}"
            )
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def _tiles(self, x: np.ndarray) -> bool:
        """Whether the windows tile ``x`` exactly (the reshape fast path applies)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return (kh, kw) == (sh, sw) and x.shape[2] % kh == 0 and x.shape[3] % kw == 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2D(_Pool2D):
    """Max pooling; the gradient goes to each window's first maximum in row-major order.

    That tie rule is PyTorch's (DESIGN.md §5). When the windows tile the input (stride equal
    to the kernel and sides divisible by it, as LeNet-5's 2×2 pooling), the input is viewed
    as ``(N, C, Ho, kh, Wo, kw)`` by a reshape and no window copy is made.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> pool = MaxPool2D(2)
    >>> x = np.array([[[[1., 1.], [0., 1.]]]])
    >>> pool.forward(x)
    array([[[[1.]]]])
    >>> pool.backward(np.ones((1, 1, 1, 1)))
    array([[[[1., 0.],
             [0., 0.]]]])
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Pool a batch ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``."""
        _check_input(x, 4, "MaxPool2D")
        c, ho, wo = self.output_shape(x.shape[1:])
        n, k = x.shape[0], self.kernel_size[0] * self.kernel_size[1]
        if self._tiles(x) and k == 4:
            # 2×2 tiles, in two pairwise steps over reshaped views (no window copy): the
            # larger of each column pair, then the larger of each row pair. A tie keeps
            # the first of the pair, so the winner is the first maximum in row-major
            # order: row 0 wins whenever it holds a maximum, and within the winning row
            # column 0 wins whenever it holds one.
            pairs = x.reshape(n, c, x.shape[2], wo, 2)
            left, right = pairs[..., 0], pairs[..., 1]
            col_second = right > left
            rows = np.maximum(left, right).reshape(n, c, ho, 2, wo)
            top, bottom = rows[:, :, :, 0], rows[:, :, :, 1]
            row_second = bottom > top
            out = np.maximum(top, bottom)
            self._cache = ("pairs", col_second, row_second, x.shape)
            return out
        # General windows: copy them out with the taps last, in row-major order, where
        # np.argmax returns the first maximum.
        taps = _windows(x, self.kernel_size, self.stride).reshape(n, c, ho, wo, k)
        first = np.argmax(taps, axis=-1)
        out = np.take_along_axis(taps, first[..., None], axis=-1)[..., 0]
        self._cache = ("argmax", first, None, x.shape)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Route ``dout (N, C, Ho, Wo)`` to the first maximum of each window."""
        self._need_cache(self._cache)
        kind, first, row_second, in_shape = self._cache
        n, c, ho, wo = dout.shape
        if kind == "pairs":
            col_second = first
            # Undo the two pairwise steps in reverse order, each a select between the
            # two members of a pair; ``g - g·m`` is exactly ``g`` or 0 for a 0/1 mask m.
            rows = np.empty((n, c, ho, 2, wo), dtype=dout.dtype)
            np.multiply(dout, row_second, out=rows[:, :, :, 1])
            np.subtract(dout, rows[:, :, :, 1], out=rows[:, :, :, 0])
            rows = rows.reshape(n, c, 2 * ho, wo)
            dx = np.empty((n, c, 2 * ho, wo, 2), dtype=dout.dtype)
            np.multiply(rows, col_second, out=dx[..., 1])
            np.subtract(rows, dx[..., 1], out=dx[..., 0])
            return dx.reshape(in_shape)
        kh, kw = self.kernel_size
        onehot = (first[..., None] == np.arange(kh * kw)) * dout[..., None]
        dcols = onehot.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 4, 5, 2, 3)
        return _col2im(dcols, in_shape, self.kernel_size, self.stride)


class AvgPool2D(_Pool2D):
    """Average pooling over ``kernel_size`` windows (no padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> AvgPool2D(2).forward(np.arange(4.0).reshape(1, 1, 2, 2))
    array([[[[1.5]]]])
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Pool a batch ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``."""
        _check_input(x, 4, "AvgPool2D")
        self.output_shape(x.shape[1:])
        self._cache = (x.shape,)
        return _windows(x, self.kernel_size, self.stride).mean(axis=(4, 5), dtype=x.dtype)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Spread ``dout (N, C, Ho, Wo)`` evenly over each window."""
        self._need_cache(self._cache)
        (in_shape,) = self._cache
        kh, kw = self.kernel_size
        share = (dout / (kh * kw)).astype(dout.dtype, copy=False)
        dcols = np.broadcast_to(
            share[:, :, None, None], (*dout.shape[:2], kh, kw, *dout.shape[2:])
        )
        return _col2im(dcols, in_shape, self.kernel_size, self.stride)


# --------------------------------------------------------------------------- activations


class ReLU(Layer):
    """``max(x, 0)``; the gradient at 0 is taken as 0, as in PyTorch.

    Examples
    --------
    >>> ReLU().forward(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    def __init__(self) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply elementwise to an array of any shape."""
        self._mask = x > 0
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Pass ``dout`` where the input was positive, 0 elsewhere."""
        self._need_cache(self._mask)
        return dout * self._mask  # a product with the boolean mask is faster than np.where


class Tanh(Layer):
    """Hyperbolic tangent; ``dy/dx = 1 - y²``."""

    def __init__(self) -> None:
        super().__init__()
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply elementwise to an array of any shape."""
        self._out = np.tanh(x)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Multiply ``dout`` by ``1 - y²``."""
        self._need_cache(self._out)
        return dout * (1 - self._out * self._out)


class Sigmoid(Layer):
    """Logistic function ``1 / (1 + exp(-x))``, overflow-free; ``dy/dx = y (1 - y)``."""

    def __init__(self) -> None:
        super().__init__()
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply elementwise to an array of any shape."""
        # exp of a non-positive number never overflows: use e^{-|x|} on both branches.
        e = np.exp(-np.abs(x))
        self._out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Multiply ``dout`` by ``y (1 - y)``."""
        self._need_cache(self._out)
        return dout * self._out * (1 - self._out)


# --------------------------------------------------------------------------- shape & dense


class Flatten(Layer):
    """Flatten ``(N, C, H, W)`` to ``(N, C·H·W)`` in ``(C, H, W)`` order, as PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: Shape | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Reshape a batch to ``(N, features)``."""
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Reshape the gradient back to the input's shape."""
        self._need_cache(self._shape)
        return dout.reshape(self._shape)


class Linear(Layer):
    """Fully connected layer ``y = x Wᵀ + b``.

    Parameters
    ----------
    in_features, out_features : int
    dtype : float32 or float64
    rng : numpy.random.Generator, optional
        Source of the He/Kaiming-normal initial weights; biases start at zero.

    Attributes
    ----------
    params : {'weight': ndarray (out, in), 'bias': ndarray (out,)}
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _pair(in_features, "in_features", 1)[0]
        self.out_features = _pair(out_features, "out_features", 1)[0]
        self.dtype = _float_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        w = rng.standard_normal((self.out_features, self.in_features))
        self.params["weight"] = (w * np.sqrt(2.0 / self.in_features)).astype(self.dtype)
        self.params["bias"] = np.zeros(self.out_features, dtype=self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x: np.ndarray | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Linear expects {self.in_features} input features, got shape {input_shape}"
            )
        return (self.out_features,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Map ``x (N, in_features)`` to ``(N, out_features)``."""
        _check_input(x, 2, "Linear")
        self.output_shape(x.shape[1:])
        self._x = x
        out = x @ self.params["weight"].T
        out += self.params["bias"]
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``dW = doutᵀ x``, ``db = Σ dout``, returns ``dx = dout W``."""
        self._need_cache(self._x)
        np.matmul(dout.T, self._x, out=self.grads["weight"])
        self.grads["bias"][...] = dout.sum(axis=0)
        return dout @ self.params["weight"]

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; identity in evaluation mode.

    Parameters
    ----------
    p : float
        Drop probability in ``[0, 1)``.
    rng : numpy.random.Generator, optional
        Source of the masks (seed it for reproducible training).
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drop and rescale (training) or pass through (evaluation)."""
        if not self.training or self.p == 0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * self._mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Apply the same mask and scale to the gradient."""
        return dout if self._mask is None else dout * self._mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
