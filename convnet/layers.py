"""Network layers: configuration, and pure forward and backward maths (docs/design.md §5).

Every layer follows one interface, that of the classic teaching code::

    params = layer.init_params(rng)                          # {} for a layer without any
    out, cache = layer.forward(params, x, training=True, rng=None)
    dx, grads = layer.backward(params, cache, dout, need_dx=True)

A layer object holds only its configuration (channels, kernel size, stride, dtype, …).
``params`` is a dict of arrays that the caller keeps (a :class:`~convnet.model.Sequential`
keeps one per layer); ``cache`` is whatever ``forward`` hands to ``backward``; ``grads``
has the keys and shapes of ``params``; ``dx`` is ``dL/dx`` for ``dout = dL/d(out)``, or
None when the caller passed ``need_dx=False`` (the first layer of a network: its input
gradient is not needed, and for a convolution it is the costliest part of the backward
pass). Nothing is stored on the layer between the two calls, so one layer object can run
any number of batches at once, on any threads, a subclass included.

``training`` switches :class:`Dropout` between training and evaluation; ``rng`` is where a
layer that draws random numbers draws them from (None: its own generator, kept as
``layer.rng``; every other layer has ``rng = None`` and ignores the argument).

Batches are ``(N, C, H, W)`` for images and ``(N, features)`` for vectors. Parameters have
PyTorch's layouts: convolution weights ``(out, in, kh, kw)``, linear weights ``(out, in)``,
biases ``(out,)``.

The maths here is the plain reference: a convolution is an im2col product (the input
windows gathered by a strided view, one matrix product per image) and its input gradient
the transposed product scattered back tap by tap (col2im); max pooling takes the argmax of
each window's copied taps. :func:`conv2d_reference` is a slower, loop-based convolution
the im2col one is tested against. The fast versions that LeNet-5 runs on (stride-1
convolution on a padded-width grid, ReLU and 2×2 max pooling as compiled passes) are in
:mod:`convnet.fast_layers`, behind the same interface, and are tested against these.
"""

from __future__ import annotations

from typing import Any

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
    "Pad2D",
    "ReLU",
    "ScaledTanh",
    "Sigmoid",
    "Subsample2D",
    "Tanh",
    "conv2d_reference",
]

Shape = tuple[int, ...]
#: A layer's parameters (or their gradients) by name, e.g. ``{"weight": …, "bias": …}``.
Params = dict[str, np.ndarray]
#: Where a random layer draws from (None: its own generator).
Rng = np.random.Generator | None
#: What ``forward`` returns: the output and the cache.
Forward = tuple[np.ndarray, Any]
#: What ``backward`` returns: the input gradient (or None) and the parameter gradients.
Backward = tuple[np.ndarray | None, Params]


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


def _pad_batch(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Zero-pad the last two axes into a fresh contiguous array (faster than ``np.pad``)."""
    ph, pw = padding
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


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

    The adjoint of :func:`_windows`: tap ``(i, j)`` of window ``(y, x)`` read pixel
    ``(y·sh + i, x·sw + j)``, so its gradient is added there, one tap at a time.
    """
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = dcols.shape[-2:]
    dxp = np.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += dcols[:, :, i, j]
    return dxp


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
    """Base class: a layer's configuration and its pure forward and backward maths.

    Subclasses override :meth:`forward` and :meth:`backward` (and :meth:`init_params` if
    they have parameters, :meth:`output_shape` if they change the shape); see the module
    docstring for the interface.

    Attributes
    ----------
    rng : numpy.random.Generator or None
        The generator of a layer that draws random numbers in :meth:`forward` (None for
        the others). Such a layer draws only from the ``rng`` argument of ``forward``,
        falling back on this one when it is None, so that a caller running chunks of a
        batch at once can hand each chunk its own (see :class:`~convnet.model.Sequential`).
    """

    rng: np.random.Generator | None = None

    def init_params(self, rng: np.random.Generator | int | None = None) -> Params:
        """Fresh initial parameters, drawn from ``rng`` (a generator or a seed); ``{}`` here."""
        return {}

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:  # pragma: no cover - abstract
        """The layer's output for a batch, and what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:  # pragma: no cover - abstract
        """``dL/dx`` (None if not ``need_dx``) and the parameter gradients, for ``dL/dy``."""
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of one output sample for one input sample's shape (no batch axis)."""
        return tuple(input_shape)

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

    Notes
    -----
    Parameters: ``weight`` ``(out, in, kh, kw)`` and ``bias`` ``(out,)``.
    :meth:`init_params` draws He/Kaiming-normal weights (``std = sqrt(2 / fan_in)``) and
    sets the biases to zero.

    Examples
    --------
    >>> conv = Conv2D(1, 6, 5, padding=2)
    >>> params = conv.init_params(np.random.default_rng(0))
    >>> out, cache = conv.forward(params, np.zeros((2, 1, 28, 28), np.float32))
    >>> out.shape
    (2, 6, 28, 28)
    >>> dx, grads = conv.backward(params, cache, np.ones_like(out))
    >>> dx.shape, grads["weight"].shape
    ((2, 1, 28, 28), (6, 1, 5, 5))
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
    ) -> None:
        self.in_channels = _pair(in_channels, "in_channels", 1)[0]
        self.out_channels = _pair(out_channels, "out_channels", 1)[0]
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.dtype = _float_dtype(dtype)

    def init_params(self, rng: np.random.Generator | int | None = None) -> Params:
        """He-normal ``weight (out, in, kh, kw)`` and zero ``bias (out,)``, in ``dtype``."""
        rng = np.random.default_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        weight = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return {
            "weight": weight.astype(self.dtype),
            "bias": np.zeros(self.out_channels, dtype=self.dtype),
        }

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

    def _padded(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        """The checked input zero-padded (contiguous), and the output's height and width."""
        _check_input(x, 4, "Conv2D")
        if x.dtype != self.dtype:
            raise TypeError(f"Conv2D: input dtype {x.dtype} differs from the layer's {self.dtype}")
        _, ho, wo = self.output_shape(x.shape[1:])
        xp = _pad_batch(x, self.padding) if any(self.padding) else np.ascontiguousarray(x)
        return xp, ho, wo

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Convolve a batch: ``out = W · cols + b`` over the im2col columns.

        Parameters
        ----------
        params : {'weight': ndarray (out, in, kh, kw), 'bias': ndarray (out,)}
        x : ndarray, shape (N, in_channels, H, W), the layer's dtype

        Returns
        -------
        out : ndarray, shape (N, out_channels, Ho, Wo)
            ``Ho = (H + 2·ph - kh) // sh + 1``, likewise ``Wo``.
        cache : the columns ``(N, in·kh·kw, Ho·Wo)`` and the padded and input shapes
        """
        xp, ho, wo = self._padded(x)
        n, o = len(x), self.out_channels
        # cols[n, (c, i, j), (y, x)] = xp[n, c, y·sh + i, x·sw + j]
        cols = _windows(xp, self.kernel_size, self.stride).transpose(0, 1, 4, 5, 2, 3)
        cols = cols.reshape(n, -1, ho * wo)
        out = np.matmul(params["weight"].reshape(o, -1), cols).reshape(n, o, ho, wo)
        out += params["bias"][:, None, None]
        return out, (cols, xp.shape, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Gradients of a convolution (docs/design.md §5).

        The weight gradient is the correlation of the input with the output error,
        ``dW = Σ_n δ_n · cols_nᵀ``; the input gradient is the full convolution of the
        output error with the flipped kernel, here the transposed product ``Wᵀ δ`` summed
        back onto the padded image (col2im) and cropped.

        Parameters
        ----------
        params : as for :meth:`forward`
        cache : what :meth:`forward` returned
        dout : ndarray, shape (N, out_channels, Ho, Wo)
        need_dx : bool
            When False the input gradient is not computed and None is returned for it.

        Returns
        -------
        dx : ndarray, shape (N, in_channels, H, W), or None
        grads : {'weight': ndarray (out, in, kh, kw), 'bias': ndarray (out,)}
        """
        cols, padded_shape, in_shape = cache
        weight = params["weight"]
        n, o, ho, wo = dout.shape
        d = np.ascontiguousarray(dout).reshape(n, o, ho * wo)
        dw = np.matmul(d, cols.transpose(0, 2, 1)).sum(axis=0)
        grads = {"weight": dw.reshape(weight.shape), "bias": dout.sum(axis=(0, 2, 3))}
        if not need_dx:
            return None, grads
        kh, kw = self.kernel_size
        dcols = np.matmul(weight.reshape(o, -1).T, d).reshape(n, -1, kh, kw, ho, wo)
        dxp = _col2im(dcols, padded_shape, self.kernel_size, self.stride)
        (ph, pw), (_, _, h, w) = self.padding, in_shape
        return dxp[:, :, ph : ph + h, pw : pw + w], grads

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})"
        )


# --------------------------------------------------------------------------- pooling


class _Pool2D(Layer):
    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise ValueError(
                f"{type(self).__name__} window {self.kernel_size} does not fit an input of {h}x{w}"
            )
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2D(_Pool2D):
    """Max pooling; the gradient goes to each window's first maximum in row-major order.

    That tie rule is PyTorch's (docs/design.md §5).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> pool = MaxPool2D(2)
    >>> out, cache = pool.forward({}, np.array([[[[1., 1.], [0., 1.]]]]))
    >>> out
    array([[[[1.]]]])
    >>> pool.backward({}, cache, np.ones((1, 1, 1, 1)))[0]
    array([[[[1., 0.],
             [0., 0.]]]])
    """

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Pool a batch ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``.

        The cache holds the index of each window's first maximum and the input shape.
        """
        _check_input(x, 4, "MaxPool2D")
        c, ho, wo = self.output_shape(x.shape[1:])
        n, (kh, kw) = len(x), self.kernel_size
        # The taps of every window copied out last, in row-major order, where np.argmax
        # returns the first maximum.
        taps = _windows(x, self.kernel_size, self.stride).reshape(n, c, ho, wo, kh * kw)
        first = np.argmax(taps, axis=-1)
        out = np.take_along_axis(taps, first[..., None], axis=-1)[..., 0]
        return out, (first, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Route ``dout (N, C, Ho, Wo)`` to the first maximum of each window."""
        first, in_shape = cache
        n, c, ho, wo = dout.shape
        kh, kw = self.kernel_size
        onehot = (first[..., None] == np.arange(kh * kw)) * dout[..., None]
        dcols = onehot.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 4, 5, 2, 3)
        return _col2im(dcols, in_shape, self.kernel_size, self.stride), {}


class AvgPool2D(_Pool2D):
    """Average pooling over ``kernel_size`` windows (no padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> AvgPool2D(2).forward({}, np.arange(4.0).reshape(1, 1, 2, 2))[0]
    array([[[[1.5]]]])
    """

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Pool a batch ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``; the cache is the input shape."""
        _check_input(x, 4, "AvgPool2D")
        self.output_shape(x.shape[1:])
        out = _windows(x, self.kernel_size, self.stride).mean(axis=(4, 5), dtype=x.dtype)
        return out, x.shape

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Spread ``dout (N, C, Ho, Wo)`` evenly over each window."""
        kh, kw = self.kernel_size
        share = (dout / (kh * kw)).astype(dout.dtype, copy=False)
        dcols = np.broadcast_to(
            share[:, :, None, None], (*dout.shape[:2], kh, kw, *dout.shape[2:])
        )
        return _col2im(dcols, cache, self.kernel_size, self.stride), {}


class Subsample2D(_Pool2D):
    """LeCun et al.'s trainable subsampling: each window's sum times a per-channel
    coefficient, plus a per-channel bias (docs/design.md §5.9).

    ``out[n, c, y, x] = a[c] · Σ_{i,j} x[n, c, y·sh + i, x·sw + j] + b[c]``; no padding.

    Parameters
    ----------
    channels : int
        Channels of the input (one coefficient and one bias each).
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    dtype : float32 or float64
        Parameter dtype.

    Notes
    -----
    Parameters: ``weight`` ``(channels,)``, the coefficients, and ``bias`` ``(channels,)``.
    :meth:`init_params` starts every coefficient at ``1 / (kh·kw)`` and every bias at 0,
    so that the layer starts as plain average pooling; it draws no random numbers.

    Examples
    --------
    >>> sub = Subsample2D(1, 2, dtype=np.float64)
    >>> sub.forward(sub.init_params(), np.arange(4.0).reshape(1, 1, 2, 2))[0]
    array([[[[1.5]]]])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(kernel_size, stride)
        self.channels = _pair(channels, "channels", 1)[0]
        self.dtype = _float_dtype(dtype)

    def init_params(self, rng: np.random.Generator | int | None = None) -> Params:
        """Coefficients ``1 / (kh·kw)`` and zero biases, ``(channels,)`` each, in ``dtype``."""
        kh, kw = self.kernel_size
        return {
            "weight": np.full(self.channels, 1 / (kh * kw), dtype=self.dtype),
            "bias": np.zeros(self.channels, dtype=self.dtype),
        }

    def output_shape(self, input_shape: Shape) -> Shape:
        if input_shape[0] != self.channels:
            raise ValueError(
                f"Subsample2D expects {self.channels} input channels, got {input_shape[0]}"
            )
        return super().output_shape(input_shape)

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Subsample a batch ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``; the cache holds the
        window sums and the input shape."""
        _check_input(x, 4, "Subsample2D")
        if x.dtype != self.dtype:
            raise TypeError(
                f"Subsample2D: input dtype {x.dtype} differs from the layer's {self.dtype}"
            )
        self.output_shape(x.shape[1:])
        sums = _windows(x, self.kernel_size, self.stride).sum(axis=(4, 5), dtype=x.dtype)
        out = sums * params["weight"][:, None, None]
        out += params["bias"][:, None, None]
        return out, (sums, x.shape)

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """``da[c] = Σ dout · sums``, ``db[c] = Σ dout``, and ``a[c] · dout`` to every tap
        of the window."""
        sums, in_shape = cache
        grads = {
            "weight": (dout * sums).sum(axis=(0, 2, 3)),
            "bias": dout.sum(axis=(0, 2, 3)),
        }
        if not need_dx:
            return None, grads
        kh, kw = self.kernel_size
        share = dout * params["weight"][:, None, None]
        dcols = np.broadcast_to(
            share[:, :, None, None], (*dout.shape[:2], kh, kw, *dout.shape[2:])
        )
        return _col2im(dcols, in_shape, self.kernel_size, self.stride), grads

    def __repr__(self) -> str:
        return (
            f"Subsample2D({self.channels}, kernel_size={self.kernel_size}, stride={self.stride})"
        )


class Pad2D(Layer):
    """Pad the last two axes with a constant: ``(N, C, H, W)`` to ``(N, C, H + 2·ph, W + 2·pw)``.

    Parameters
    ----------
    padding : int or (int, int)
        Values added on each side of the height and of the width.
    value : float
        The constant (for LeNet-5's classic variant, the normalised white background,
        so that the 28×28 digit sits in a 32×32 field, docs/design.md §5.9).

    Examples
    --------
    >>> Pad2D(1, value=-1.0).forward({}, np.ones((1, 1, 1, 1)))[0][0, 0]
    array([[-1., -1., -1.],
           [-1.,  1., -1.],
           [-1., -1., -1.]])
    """

    def __init__(self, padding: int | tuple[int, int], value: float = 0.0) -> None:
        self.padding = _pair(padding, "padding", 0)
        self.value = float(value)
        if not np.isfinite(self.value):
            raise ValueError(f"value must be finite, got {value!r}")

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = input_shape
        ph, pw = self.padding
        return (c, h + 2 * ph, w + 2 * pw)

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """The padded batch; the cache is the input shape."""
        _check_input(x, 4, "Pad2D")
        (ph, pw), (n, c, h, w) = self.padding, x.shape
        out = np.full((n, c, h + 2 * ph, w + 2 * pw), self.value, dtype=x.dtype)
        out[:, :, ph : ph + h, pw : pw + w] = x
        return out, x.shape

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """The gradient cropped back to the input's shape (the constant has none)."""
        (ph, pw), (_, _, h, w) = self.padding, cache
        return dout[:, :, ph : ph + h, pw : pw + w], {}

    def __repr__(self) -> str:
        return f"Pad2D({self.padding}, value={self.value!r})"


# --------------------------------------------------------------------------- activations


class ReLU(Layer):
    """``max(x, 0)``; the gradient at 0 is taken as 0, as in PyTorch.

    Examples
    --------
    >>> ReLU().forward({}, np.array([[-1.0, 2.0]]))[0]
    array([[0., 2.]])
    """

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Apply elementwise to an array of any shape; the cache is the mask ``x > 0``."""
        return np.maximum(x, 0, dtype=x.dtype), x > 0

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Pass ``dout`` where the input was positive, 0 elsewhere."""
        return dout * cache, {}  # a product with the boolean mask is faster than np.where


class Tanh(Layer):
    """Hyperbolic tangent; ``dy/dx = 1 - y²``."""

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Apply elementwise to an array of any shape; the cache is the output."""
        out = np.tanh(x)
        return out, out

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Multiply ``dout`` by ``1 - y²``."""
        return dout * (1 - cache * cache), {}


class ScaledTanh(Layer):
    """LeCun's squashing function ``A · tanh(S·x)``, ``A = 1.7159``, ``S = 2/3``.

    LeCun et al. 1998 (appendix A) choose ``A`` and ``S`` so that ``f(±1) = ±1`` and the
    gain is largest around ±1; ``dy/dx = A·S·(1 - tanh²(S·x)) = (S/A)·(A² - y²)``.

    Parameters
    ----------
    amplitude, slope : float
        ``A`` and ``S``.

    Examples
    --------
    >>> round(float(ScaledTanh().forward({}, np.array([[1.0]]))[0][0, 0]), 4)
    1.0
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2 / 3) -> None:
        if not (np.isfinite(amplitude) and amplitude > 0 and np.isfinite(slope) and slope > 0):
            raise ValueError(f"amplitude and slope must be positive, got {amplitude}, {slope}")
        self.amplitude, self.slope = float(amplitude), float(slope)

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Apply elementwise to an array of any shape; the cache is ``tanh(S·x)``."""
        t = np.tanh(x * x.dtype.type(self.slope))
        return t * x.dtype.type(self.amplitude), t

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Multiply ``dout`` by ``A·S·(1 - tanh²(S·x))``."""
        gain = dout.dtype.type(self.amplitude * self.slope)
        return dout * (gain * (1 - cache * cache)), {}

    def __repr__(self) -> str:
        return f"ScaledTanh(amplitude={self.amplitude}, slope={self.slope:.6g})"


class Sigmoid(Layer):
    """Logistic function ``1 / (1 + exp(-x))``, overflow-free; ``dy/dx = y (1 - y)``."""

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Apply elementwise to an array of any shape; the cache is the output."""
        # exp of a non-positive number never overflows: use e^{-|x|} on both branches.
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return out, out

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Multiply ``dout`` by ``y (1 - y)``."""
        return dout * cache * (1 - cache), {}


# --------------------------------------------------------------------------- shape & dense


class Flatten(Layer):
    """Flatten ``(N, C, H, W)`` to ``(N, C·H·W)`` in ``(C, H, W)`` order, as PyTorch."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Reshape a batch to ``(N, features)``; the cache is the input shape."""
        return x.reshape(x.shape[0], -1), x.shape

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Reshape the gradient back to the input's shape."""
        return dout.reshape(cache), {}


class Linear(Layer):
    """Fully connected layer ``y = x Wᵀ + b``.

    Parameters
    ----------
    in_features, out_features : int
    dtype : float32 or float64
        Parameter dtype.

    Notes
    -----
    Parameters: ``weight`` ``(out, in)`` and ``bias`` ``(out,)``. :meth:`init_params`
    draws He/Kaiming-normal weights and sets the biases to zero.
    """

    def __init__(
        self, in_features: int, out_features: int, *, dtype: DTypeLike = np.float32
    ) -> None:
        self.in_features = _pair(in_features, "in_features", 1)[0]
        self.out_features = _pair(out_features, "out_features", 1)[0]
        self.dtype = _float_dtype(dtype)

    def init_params(self, rng: np.random.Generator | int | None = None) -> Params:
        """He-normal ``weight (out, in)`` and zero ``bias (out,)``, in ``dtype``."""
        rng = np.random.default_rng(rng)
        w = rng.standard_normal((self.out_features, self.in_features))
        return {
            "weight": (w * np.sqrt(2.0 / self.in_features)).astype(self.dtype),
            "bias": np.zeros(self.out_features, dtype=self.dtype),
        }

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Linear expects {self.in_features} input features, got shape {input_shape}"
            )
        return (self.out_features,)

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Map ``x (N, in_features)`` to ``(N, out_features)``; the cache is ``x``."""
        _check_input(x, 2, "Linear")
        self.output_shape(x.shape[1:])
        out = x @ params["weight"].T
        out += params["bias"]
        return out, x

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """``dW = doutᵀ x``, ``db = Σ dout``, and ``dx = dout W``."""
        grads = {"weight": dout.T @ cache, "bias": dout.sum(axis=0)}
        return (dout @ params["weight"] if need_dx else None), grads

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; identity in evaluation (``training=False``).

    Parameters
    ----------
    p : float
        Drop probability in ``[0, 1)``.
    rng : numpy.random.Generator, optional
        Where the masks are drawn from when ``forward`` is given no generator (seed it for
        reproducible training); kept as :attr:`rng`.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(
        self, params: Params, x: np.ndarray, *, training: bool = True, rng: Rng = None
    ) -> Forward:
        """Drop and rescale (training) or pass through; the cache is the scaled mask."""
        if not training or self.p == 0:
            return x, None
        rng = self.rng if rng is None else rng
        keep = rng.random(x.shape, dtype=np.float32) >= self.p
        mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * mask, mask

    def backward(
        self, params: Params, cache: Any, dout: np.ndarray, *, need_dx: bool = True
    ) -> Backward:
        """Apply the same mask and scale to the gradient."""
        return (dout if cache is None else dout * cache), {}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
