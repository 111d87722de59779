"""Looking into a trained network: filters, feature maps, saliency, mistakes, confusion.

The numbers come from plain functions (:func:`filter_grid`, :func:`feature_maps`,
:func:`saliency`, :func:`most_wrong`); the pictures from ``*_figure`` functions that turn
them into :class:`matplotlib.figure.Figure` objects, made without pyplot so that no global
matplotlib state is touched (as :func:`convnet.train.curves_figure`); :func:`save_figure`
writes one to a PNG atomically (:func:`pyramids.io.atomic_path`).

Signed pictures (weights, feature maps, gradients) use a diverging colour map centred on 0:
red is positive, blue negative, white zero, with a colour bar giving the scale.

Every function takes a :class:`~convnet.committee.Committee` as well as one network. What
the committee decides (the probabilities, the saliency map, the most-wrong digits and the
confusion matrix) is the whole committee's; filters and feature maps belong to one network,
and are its first member's (:func:`~convnet.committee.first_network`), which the figures
of a committee say in their titles.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from pyramids.io import atomic_path

from .committee import Committee, first_network
from .model import Sequential
from .train import predict

__all__ = [
    "MostWrong",
    "confusion_figure",
    "feature_maps",
    "feature_maps_figure",
    "figure_png",
    "filter_grid",
    "filters_figure",
    "most_wrong",
    "most_wrong_figure",
    "saliency",
    "saliency_figure",
    "save_figure",
]

#: Diverging colour map of every signed picture (red positive, blue negative, white 0).
DIVERGING = "RdBu_r"


def _conv_weight(model: Sequential | Committee, layer: str) -> np.ndarray:
    model = first_network(model)
    params = dict(model.params).get(layer)
    weight = None if params is None else params.get("weight")
    if weight is None or weight.ndim != 4:
        convs = [n for n, p in model.params.items() if p.get("weight", np.empty(0)).ndim == 4]
        raise ValueError(f"layer must name a convolution ({', '.join(convs)}), got {layer!r}")
    return weight


def filter_grid(model: Sequential | Committee, layer: str = "conv1") -> np.ndarray:
    """The filters of a convolution as one mosaic, each tile scaled to ``[-1, 1]``.

    Every tile (one output channel's kernel for one input channel) is divided by its own
    largest absolute weight, so that its largest weight is ±1 and 0 stays 0 (a tile of
    zeros stays zeros). Tiles are separated by a row or column of NaN (drawn as
    background).

    Parameters
    ----------
    model : Sequential or Committee
        One network (a committee's first member).
    layer : str
        A convolution's name (``"conv1"``, ``"conv2"``).

    Returns
    -------
    ndarray, float64
        For a weight of shape ``(out, in, k, k)``: ``out`` rows by ``in`` columns of
        ``k × k`` tiles, shape ``(out (k + 1) - 1, in (k + 1) - 1)``; a convolution of one
        input channel is laid out as one row of ``out`` tiles, shape
        ``(k, out (k + 1) - 1)``.

    Raises
    ------
    ValueError
        If ``layer`` is not a convolution of the model.

    Examples
    --------
    >>> from convnet import lenet5
    >>> filter_grid(lenet5(seed=0), "conv2").shape
    (95, 35)
    """
    w = np.asarray(_conv_weight(model, layer), dtype=np.float64)
    out, inp, kh, kw = w.shape
    peak = np.abs(w).max(axis=(2, 3), keepdims=True)
    tiles = w / np.where(peak > 0, peak, 1)
    if inp == 1:
        tiles = tiles.reshape(1, out, kh, kw)
    rows, cols = tiles.shape[:2]
    grid = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for r in range(rows):
        for c in range(cols):
            grid[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = tiles[r, c]
    return grid


def _one_image(model: Sequential | Committee, x: np.ndarray) -> np.ndarray:
    """``x`` as a batch of one ``(1, 1, h, w)`` in the model's parameter dtype."""
    dtype = next(iter(model.state_dict(copy=False).values())).dtype
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] != 1:
        raise ValueError(f"x must be one normalised image, (h, w) or (1, h, w), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x[None].astype(dtype, copy=False)


def feature_maps(model: Sequential | Committee, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output for one image, in evaluation mode.

    Parameters
    ----------
    model : Sequential or Committee
        One network (a committee's first member).
    x : ndarray, shape (h, w) or (1, h, w)
        One normalised image (:func:`convnet.data.normalise`).

    Returns
    -------
    dict of str to ndarray
        Layer name to that layer's output without the batch axis, in the order of the
        layers: ``(channels, h, w)`` after a convolution or pooling, ``(features,)`` after
        ``flatten`` and the linear layers (the last one's are the logits).

    Examples
    --------
    >>> from convnet import lenet5
    >>> maps = feature_maps(lenet5(seed=0), np.zeros((28, 28), np.float32))
    >>> [v.shape for k, v in maps.items() if k.startswith(("conv", "pool"))]
    [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5)]
    """
    model = first_network(model)
    h = _one_image(model, x)
    maps = {}
    for name, layer in model.layers:
        h, _ = layer.forward(model.params[name], h, training=False, rng=None)
        maps[name] = h[0]
    return maps


def saliency(model: Sequential | Committee, x: np.ndarray) -> np.ndarray:
    """Gradient of the winning logit with respect to the input image.

    Computed with the model's own backward pass: :meth:`Sequential.backward` with ``dout``
    the one-hot vector of the class with the largest logit. A committee's "logit" is the
    log of its mean probability (:meth:`Committee.forward`), whose gradient runs back
    through every member (:meth:`Committee.backward`).

    Parameters
    ----------
    model : Sequential or Committee
    x : ndarray, shape (h, w) or (1, h, w)
        One normalised image.

    Returns
    -------
    ndarray, shape (h, w), the model's dtype
        ``d logit[winner] / d x``.

    Examples
    --------
    >>> from convnet import lenet5
    >>> saliency(lenet5(seed=0), np.zeros((28, 28), np.float32)).shape
    (28, 28)
    """
    batch = _one_image(model, x)
    was_training = model.training
    model.eval()
    try:
        logits = model.forward(batch)
        dout = np.zeros_like(logits)
        dout[0, int(logits[0].argmax())] = 1
        dx = model.backward(dout, input_grad=True)
    finally:
        model.train(was_training)
    return dx[0, 0]


class MostWrong(NamedTuple):
    """The test digits a model gets most wrong, most confident mistake first.

    Attributes
    ----------
    indices : ndarray of int, shape (k,)
        Positions in the images given.
    labels : ndarray of int, shape (k,)
        Their true labels.
    predicted : ndarray of int, shape (k,)
        The (wrong) labels the model gave.
    probabilities : ndarray of float, shape (k,)
        The probability the model gave its wrong label.
    """

    indices: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray


def most_wrong(
    model: Sequential | Committee, images: np.ndarray, labels: np.ndarray, k: int = 16
) -> MostWrong:
    """The ``k`` misclassified images with the highest probability on a wrong class.

    Parameters
    ----------
    model : Sequential or Committee
    images : ndarray, shape (N, 1, h, w)
        Normalised images.
    labels : ndarray of int, shape (N,)
    k : int
        At most this many (fewer when fewer are wrong).

    Returns
    -------
    MostWrong
        Sorted by probability, highest first; ties keep the images' order.

    Raises
    ------
    ValueError
        If ``k`` is not positive or the labels do not match the images.
    """
    labels = np.asarray(labels)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    probs = predict(model, images)
    pred = probs.argmax(axis=1)
    top = probs[np.arange(len(pred)), pred]
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-top[wrong], kind="stable")][:k]
    return MostWrong(order, labels[order], pred[order], top[order])


# --------------------------------------------------------------------------- figures


def _symmetric_image(fig, ax, array: np.ndarray, label: str):
    limit = float(np.nanmax(np.abs(array))) if np.isfinite(array).any() else 1.0
    limit = limit if limit > 0 else 1.0
    im = ax.imshow(array, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.02)
    return im


def filters_figure(model: Sequential | Committee, layer: str = "conv1"):
    """The :func:`filter_grid` of a convolution, with a colour bar from -1 to 1.

    Parameters
    ----------
    model : Sequential or Committee
        One network; a committee's first member, as the title says.
    layer : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    grid = filter_grid(model, layer)
    out, inp = _conv_weight(model, layer).shape[:2]
    height = 2.8 if inp == 1 else 8
    # the picture's own height leaves room for the title and the axis labels
    width = grid.shape[1] / grid.shape[0] * (height - 1.0) + 1.8
    fig = Figure(figsize=(max(4.0, width), height))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="weight / max |weight|", fraction=0.046)
    whose = f" of member 1 of {len(model)}" if isinstance(model, Committee) else ""
    if inp == 1:
        ax.set_title(f"{layer}: {out} filters{whose}")
    else:
        ax.set(ylabel=f"output channel (1 … {out})", xlabel=f"input channel (1 … {inp})")
        ax.set_title(f"{layer}: {out}×{inp} kernels{whose}")
    fig.tight_layout()
    return fig


def _mosaic(maps: np.ndarray) -> np.ndarray:
    """Channels ``(c, h, w)`` side by side with a NaN column between them."""
    c, h, w = maps.shape
    row = np.full((h, c * (w + 1) - 1), np.nan)
    for i in range(c):
        row[:, i * (w + 1) : i * (w + 1) + w] = maps[i]
    return row


def feature_maps_figure(maps: dict[str, np.ndarray], image: np.ndarray, title: str = ""):
    """The input and every spatial feature map of :func:`feature_maps`, one row a layer.

    Each row is drawn on its own symmetric scale (its colour bar).

    Parameters
    ----------
    maps : dict of str to ndarray
        :func:`feature_maps`' result; the ``(channels, h, w)`` entries are drawn.
    image : ndarray, shape (h, w)
        The input, drawn first, in grey.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    spatial = {k: v for k, v in maps.items() if v.ndim == 3}
    fig = Figure(figsize=(13, 1.3 * (len(spatial) + 1) + 0.5))
    axes = fig.subplots(len(spatial) + 1, 1, squeeze=False)[:, 0]
    axes[0].imshow(np.asarray(image), cmap="gray", interpolation="nearest")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_ylabel("input", rotation=0, ha="right", va="center")
    for ax, (name, value) in zip(axes[1:], spatial.items(), strict=True):
        _symmetric_image(fig, ax, _mosaic(np.asarray(value, dtype=np.float64)), "")
        ax.set_ylabel(f"{name}\n{value.shape[0]}×{value.shape[1]}×{value.shape[2]}",
                      rotation=0, ha="right", va="center")  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def saliency_figure(image: np.ndarray, gradient: np.ndarray, title: str = ""):
    """The input beside its saliency map (:func:`saliency`), on a symmetric scale.

    Parameters
    ----------
    image : ndarray, shape (h, w)
    gradient : ndarray, shape (h, w)
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.imshow(np.asarray(image), cmap="gray", interpolation="nearest")
    ax1.set_xticks([])
    ax1.set_yticks([])
    ax1.set_title("input")
    _symmetric_image(fig, ax2, np.asarray(gradient, dtype=np.float64), "d logit / d pixel")
    ax2.set_title("saliency: gradient of the winning logit")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def most_wrong_figure(images: np.ndarray, result: MostWrong, classes: list[str] | None = None):
    """A grid of the :func:`most_wrong` digits, each titled true → predicted (probability).

    Parameters
    ----------
    images : ndarray, shape (N, h, w) or (N, 1, h, w)
        The images :func:`most_wrong` was given (raw or normalised: drawn in grey).
    result : MostWrong
    classes : list of str, optional
        Class names (default the labels' numbers).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    images = np.asarray(images)
    images = images.reshape(len(images), *images.shape[-2:])
    n = len(result.indices)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(1.5 * cols + 0.3, 1.75 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    name = (lambda i: classes[i]) if classes else str
    for ax in axes:
        ax.set_axis_off()
    for ax, i, t, p, q in zip(axes, *result, strict=False):
        ax.imshow(images[i], cmap="gray", interpolation="nearest")
        ax.set_title(f"true {name(int(t))} → {name(int(p))}\np = {q:.3f}", fontsize=9)
    fig.suptitle(f"the {n} test digits most confidently misread" if n else "no test digit misread")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, classes: list[str] | None = None, title: str = ""):
    """A confusion matrix as a heatmap with its counts written in the cells.

    Parameters
    ----------
    matrix : ndarray of int, shape (k, k)
        :func:`convnet.train.confusion_matrix`: rows are true labels, columns predictions.
    classes : list of str, optional
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap is the axes' one image; its colours are on a log scale of the counts
        (so that the few mistakes show beside the many correct answers).
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    m = np.asarray(matrix)
    k = len(m)
    names = classes or [str(i) for i in range(k)]
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["Blues"].with_extremes(bad="white")  # 0 has no logarithm: blank
    im = ax.imshow(m, cmap=cmap, norm=LogNorm(vmin=1, vmax=max(2, int(m.max()))))
    fig.colorbar(im, ax=ax, label="count (log scale)")
    threshold = np.sqrt(max(2, int(m.max())))
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                colour = "white" if m[i, j] > threshold else "black"
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                        color=colour)  # fmt: skip
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted label", ylabel="true label")
    ax.set_title(title or f"confusion matrix ({int(m.sum()):,} digits)")
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write a figure to a PNG atomically (never a half-written file).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
    dpi : int
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def figure_png(fig, dpi: int = 110) -> bytes:
    """A figure rendered to PNG bytes in memory (to write several files only once all are
    made)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()
